#!/usr/bin/env bash
# Runs one named benchmark; its last line is `RESULT NAME key=value ...` (numbers unrounded).
#   scripts/bench.sh --list     list the benchmarks
#   scripts/bench.sh NAME       set up (idempotent), build, run NAME
# Benchmarks are measurements, not tests: they are never part of scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${CLUSCOMP_BUILD_DIR:-$ROOT/build}"
export CLUSCOMP_DATA="${CLUSCOMP_DATA:-$HOME/.cache/cluscomp}"

# name | build target | description
BENCHES=(
  "io|bench_io|GGUF load + dequantisation throughput of the real model (MB/s of quantised bytes)"
  "kmeans-vs-faiss|bench_kmeans|exact CPU k-means vs faiss-cpu and scikit-learn (PyPI venv), same start; scaling; 58M-point iteration"
  "runtime|bench_runtime|real-model CPU runtime, 2 threads: prefill 512 tokens and decode tokens/s vs PyTorch (bench/runtime_torch.py; needs apt python3-torch + libopenblas0-pthread) and llama.cpp (built from the llama-cpp-python sdist by bench/llamacpp_build.sh; CLUSCOMP_RUNTIME_NO_LLAMACPP=1 skips it); every model with fp32 vs stored dense weights (extra models: NAME=FILE arguments, e.g. cc4=OUT/cc4.safetensors); dense kernel vs Eigen"
  "quality|cluscomp_cli|real model: perplexity vs true bpw for base, RTN 4/3/2-bit and ClusComp --bpw 4/3/2 (clustering only, data-free and activation-aware), compression time, decode tok/s (QUALITY_WINDOWS windows, QUALITY_ITERATIONS k-means iterations)"
  "calibrate|cluscomp_cli|real model: ClusComp --bpw 4/3/2 clustering-only vs block-wise calibrated (CAL_SAMPLES x CAL_WINDOW tokens, CAL_EPOCHS epochs, CAL_LR), perplexity, time per block, peak memory; one block's forward+backward vs PyTorch"
  "codebook-sharing|bench_codebook_sharing|real model: one codebook shared by a block's 7 projections / by attn_q of every layer vs per-matrix codebooks at the same bpw (data-free weight error)"
  "kmeans-gpu|bench_kmeans_gpu|GPU Lloyd k-means (cuda/kmeans_gpu.cuh) per-iteration ms at N = 58.7M, K = 65536, d = 4/8/16 vs a PyTorch brute force (bench/gpu/kmeans_torch.py) on the same GPU; exactness vs the CPU path first; on a GPU machine only, in the build of scripts/gpu-check.sh"
  "lookup-gemm|bench_lookup_gemm|lookup GEMV/GEMM from codes vs dense fp32 (matmul_nt, Eigen), 2 threads: 4/3/2-bpw settings, large + real-model shapes, rotated weights, in-run bandwidth"
  "lookup-gpu|bench_lookup_gpu|CUDA lookup GEMV/GEMM vs cuBLAS fp16 and decode+cuBLAS on LLaMA shapes, M = 1/4/16/256, 4/3/2-bpw settings and K = 65536 (needs a GPU; also run by scripts/gpu-check.sh)"
)

list() {
  for b in "${BENCHES[@]}"; do
    IFS='|' read -r name _ desc <<<"$b"
    printf '%-18s %s\n' "$name" "$desc"
  done
}

[[ $# -ge 1 ]] || { echo "usage: scripts/bench.sh NAME | --list" >&2; list >&2; exit 2; }
if [[ "$1" == "--list" ]]; then list; exit 0; fi
name="$1"; shift
target=""
for b in "${BENCHES[@]}"; do
  IFS='|' read -r n t _ <<<"$b"
  [[ "$n" == "$name" ]] && target="$t"
done
[[ -n "$target" ]] || { echo "bench.sh: unknown benchmark '$name'; known:" >&2; list >&2; exit 2; }

if [[ "$name" == kmeans-gpu ]]; then
  # The GPU machine has no network and no packages: this benchmark builds in scripts/gpu-check.sh's
  # build directory (vendored .deps), which gpu-check.sh configures; gpu-check.sh also runs it.
  nvidia-smi -L >/dev/null 2>&1 ||
    { echo "bench.sh kmeans-gpu: needs a GPU (nvidia-smi finds none); run it on the GPU machine" >&2; exit 1; }
  GB="${CLUSCOMP_GPU_BUILD_DIR:-$ROOT/build-gpu}"
  [[ -f "$GB/CMakeCache.txt" ]] ||
    { echo "bench.sh kmeans-gpu: no $GB; run scripts/gpu-check.sh first (it configures and builds it)" >&2; exit 1; }
  cmake --build "$GB" -j "$(nproc)" --target bench_kmeans_gpu >&2
  exec "$GB/tests/bench_kmeans_gpu" "$@"
fi
"$ROOT/scripts/setup.sh" >&2
# Benchmark-only system packages (never needed by the library or the tests).
bench_packages=()
case "$name" in
  # Debian's torch is the CPU PyTorch reachable here (the PyPI wheel needs multi-GB CUDA
  # packages); without OpenBLAS it would multiply through the reference BLAS, an unfair peer.
  runtime|calibrate) bench_packages=(python3-torch libopenblas0-pthread) ;;
esac
missing=()
for p in "${bench_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[bench] installing benchmark-only packages: ${missing[*]}" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    { echo "bench.sh: could not install ${missing[*]}" >&2; exit 1; }
fi
"$ROOT/scripts/build.sh" --target "$target" >&2
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
if [[ "$name" == quality ]]; then
  # From a clean cache: every compressed model is rebuilt (work directories removed first).
  CLI="$BUILD/examples/cli/cluscomp"
  MODEL="$CLUSCOMP_DATA/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  TEXT="$CLUSCOMP_DATA/text/kjv.evaluation.txt"
  Q="${QUALITY_OUT:-$CLUSCOMP_DATA/quality}"; W="${QUALITY_WINDOWS:-2}"; IT="${QUALITY_ITERATIONS:-10}"
  rm -rf "$Q"; mkdir -p "$Q"
  declare -A ppl bpw secs tps
  row() {  # row NAME MODEL_FILE COMPRESS_ARGS...
    local n="$1" f="$2"; shift 2
    local t0=$(date +%s.%N)
    if (($#)); then "$CLI" compress "$MODEL" --out "$f" "$@" --threads 2 > "$Q/$n.compress.txt" 2> "$Q/$n.compress.err"
      bpw[$n]=$(awk '/^overall bpw:/ {print $3}' "$Q/$n.compress.txt"); else bpw[$n]=16; fi
    secs[$n]=$(echo "$(date +%s.%N) - $t0" | bc)
    "$CLI" eval "$f" "$TEXT" --max-windows "$W" --threads 2 > "$Q/$n.eval.txt" 2>/dev/null
    ppl[$n]=$(awk '/^perplexity:/ {print $2}' "$Q/$n.eval.txt")
    "$CLI" generate "$f" "And God said," --raw --max-tokens 32 --threads 2 > /dev/null 2> "$Q/$n.gen.err"
    tps[$n]=$(grep -o '[0-9.]* tok/s decode' "$Q/$n.gen.err" | awk '{print $1}')
    printf '%-8s bpw %-8s ppl %-10s compress %6.1f s  decode %s tok/s\n' "$n" "${bpw[$n]}" "${ppl[$n]}" "${secs[$n]}" "${tps[$n]}" >&2
  }
  row base "$MODEL"
  for b in 4 3 2; do row rtn$b "$Q/rtn$b.safetensors" --method rtn --bits $b; done
  for b in 4 3 2; do row cc$b "$Q/cc$b.safetensors" --bpw $b --iterations "$IT"; done
  # Activation-aware clustering (still no training): input statistics from 16 x 256 tokens of the
  # calibration text (never the evaluation text).
  for b in 4 3 2; do row cca$b "$Q/cca$b.safetensors" --bpw $b --iterations "$IT" \
    --activations "$CLUSCOMP_DATA/text/kjv.calibration.txt"; done
  echo "windows=$W (2048 tokens each) k-means iterations=$IT; base = the Q4_1 GGUF (bpw column 16 = not compressed); cca = activation-aware" >&2
  echo "RESULT quality ppl_base=${ppl[base]} ppl_rtn4=${ppl[rtn4]} ppl_rtn3=${ppl[rtn3]} ppl_rtn2=${ppl[rtn2]} bpw_rtn2=${bpw[rtn2]} ppl_cc2=${ppl[cc2]} bpw_cc2=${bpw[cc2]} ppl_cc3=${ppl[cc3]} bpw_cc3=${bpw[cc3]} ppl_cc4=${ppl[cc4]} bpw_cc4=${bpw[cc4]} ppl_cca2=${ppl[cca2]} bpw_cca2=${bpw[cca2]} ppl_cca3=${ppl[cca3]} bpw_cca3=${bpw[cca3]} ppl_cca4=${ppl[cca4]} bpw_cca4=${bpw[cca4]}"
  exit 0
fi
if [[ "$name" == calibrate ]]; then
  CLI="$BUILD/examples/cli/cluscomp"
  MODEL="$CLUSCOMP_DATA/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  TEXT="$CLUSCOMP_DATA/text/kjv.evaluation.txt"; CAL="$CLUSCOMP_DATA/text/kjv.calibration.txt"
  Q="${CAL_OUT:-$CLUSCOMP_DATA/calibrate}"; W="${QUALITY_WINDOWS:-2}"; IT="${QUALITY_ITERATIONS:-10}"
  S="${CAL_SAMPLES:-16}"; L="${CAL_WINDOW:-256}"; E="${CAL_EPOCHS:-2}"; LR="${CAL_LR:-1e-3}"
  rm -rf "$Q"; mkdir -p "$Q"
  ppl() { "$CLI" eval "$1" "$TEXT" --max-windows "$W" --threads 2 2>/dev/null | awk '/^perplexity:/ {print $2}'; }
  declare -A p
  p[base]=$(ppl "$MODEL")
  block_s=(); peak=0
  for b in 4 3 2; do
    "$CLI" compress "$MODEL" --out "$Q/cc$b.safetensors" --bpw "$b" --iterations "$IT" --threads 2 > "$Q/cc$b.compress.txt" 2>/dev/null
    "$CLI" calibrate "$MODEL" "$Q/cc$b.safetensors" "$CAL" --out "$Q/cal$b.safetensors" --samples "$S" --window "$L" \
      --epochs "$E" --lr "$LR" --threads 2 > "$Q/cal$b.txt" 2> "$Q/cal$b.err"
    p[cc$b]=$(ppl "$Q/cc$b.safetensors"); p[cal$b]=$(ppl "$Q/cal$b.safetensors")
    bs=$(sed -n 's/^time: .*(\([0-9.]*\) s per trained block.*/\1/p' "$Q/cal$b.txt"); block_s+=("$bs")
    pk=$(sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p' "$Q/cal$b.txt")
    printf '~%s bpw: %-8s clustering-only ppl %-10s calibrated ppl %-10s %s s/block, peak RSS %s MiB\n' "$b" \
      "$(awk '/^overall bpw:/ {print $3}' "$Q/cc$b.compress.txt")" "${p[cc$b]}" "${p[cal$b]}" "$bs" "$pk" >&2
    grep '^block loss:' "$Q/cal$b.txt" >&2
  done
  "$ROOT/scripts/build.sh" --target bench_train_block >&2
  "$BUILD/bench/bench_train_block" > "$Q/block.txt"
  ratio=$(sed -n 's/^RESULT train-block .*ratio_vs_torch=\([0-9.a-z]*\).*/\1/p' "$Q/block.txt")
  cat "$Q/block.txt" >&2
  echo "windows=$W (2048 tokens) k-means iterations=$IT calibration: $S samples x $L tokens, $E epochs, lr $LR" >&2
  echo "RESULT calibrate ppl_cc2=${p[cc2]} ppl_cal2=${p[cal2]} ppl_cal3=${p[cal3]} ppl_cal4=${p[cal4]} ppl_base=${p[base]} block_s=${block_s[2]} ratio_vs_torch=${ratio}"
  exit 0
fi
if [[ "$name" == runtime && "${CLUSCOMP_RUNTIME_NO_LLAMACPP:-0}" != 1 ]]; then
  # llama.cpp peer: built (once, cached in $CLUSCOMP_DATA) from the llama.cpp that the PyPI sdist
  # of llama-cpp-python vendors. A failed build leaves the peer out and the benchmark goes on; the
  # reason reaches the report through CLUSCOMP_LLAMACPP_MISSING.
  unset CLUSCOMP_LLAMACPP_BENCH CLUSCOMP_LLAMACPP_MISSING
  if lcp_out="$("$ROOT/bench/llamacpp_build.sh")" && [[ -x "$lcp_out" ]]; then
    export CLUSCOMP_LLAMACPP_BENCH="$lcp_out"
    lcp_pc="$(dirname "$lcp_out")/install/lib/pkgconfig/llama.pc"
    export CLUSCOMP_LLAMACPP_VERSION="$(sed -n 's/^LCP_VERSION="\(.*\)"/llama-cpp-python \1 sdist/p' "$ROOT/bench/llamacpp_build.sh"), libllama $(sed -n 's/^Version: //p' "$lcp_pc" 2>/dev/null)"
  else
    export CLUSCOMP_LLAMACPP_MISSING="${lcp_out#llama.cpp unavailable: }"
    [[ -n "$CLUSCOMP_LLAMACPP_MISSING" ]] || CLUSCOMP_LLAMACPP_MISSING="bench/llamacpp_build.sh failed (see above)"
    echo "[bench] llama.cpp peer missing: $CLUSCOMP_LLAMACPP_MISSING" >&2
  fi
fi
# The GPU benchmarks are built with the GPU tests (tests/CMakeLists.txt), under tests/.
if [[ "$target" == *_gpu ]]; then exec "$BUILD/tests/$target" "$@"; fi
"$BUILD/bench/$target" "$@"
