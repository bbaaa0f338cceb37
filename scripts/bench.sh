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
"$BUILD/bench/$target" "$@"
