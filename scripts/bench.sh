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
  "runtime|bench_runtime|real-model CPU runtime, 2 threads: prefill 512 tokens and decode tokens/s vs PyTorch (bench/runtime_torch.py; needs apt python3-torch + libopenblas0-pthread); dense kernel vs Eigen"
  "quality|cluscomp_cli|real model: perplexity vs true bpw for base, RTN 4/3/2-bit and ClusComp --bpw 4/3/2 (clustering only), compression time, decode tok/s (QUALITY_WINDOWS windows, QUALITY_ITERATIONS k-means iterations)"
  "lookup-gemm|bench_lookup_gemm|lookup GEMV/GEMM from codes vs dense fp32 (matmul_nt, Eigen), 2 threads: 4/3/2-bpw settings, large + real-model shapes, rotated weights, in-run bandwidth"
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

"$ROOT/scripts/setup.sh" >&2
# Benchmark-only system packages (never needed by the library or the tests).
bench_packages=()
case "$name" in
  # Debian's torch is the CPU PyTorch reachable here (the PyPI wheel needs multi-GB CUDA
  # packages); without OpenBLAS it would multiply through the reference BLAS, an unfair peer.
  runtime) bench_packages=(python3-torch libopenblas0-pthread) ;;
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
  echo "windows=$W (2048 tokens each) k-means iterations=$IT; base = the Q4_1 GGUF (bpw column 16 = not compressed)" >&2
  echo "RESULT quality ppl_base=${ppl[base]} ppl_rtn4=${ppl[rtn4]} ppl_rtn3=${ppl[rtn3]} ppl_rtn2=${ppl[rtn2]} bpw_rtn2=${bpw[rtn2]} ppl_cc2=${ppl[cc2]} bpw_cc2=${bpw[cc2]} ppl_cc3=${ppl[cc3]} bpw_cc3=${bpw[cc3]} ppl_cc4=${ppl[cc4]} bpw_cc4=${bpw[cc4]}"
  exit 0
fi
"$BUILD/bench/$target" "$@"
