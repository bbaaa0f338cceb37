#!/usr/bin/env bash
# Sets everything up from scratch (idempotent) and runs every test this machine can run:
#   setup (packages, real model, real text, test-only Python env) -> build -> independent reference
#   dump of the real model -> install + build a consumer project against the installed package ->
#   a short fuzzing run of the file parsers -> ctest (labels cpu and model; gpu tests report
#   themselves skipped where no GPU exists).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${CLUSCOMP_BUILD_DIR:-$ROOT/build}"
DATA="${CLUSCOMP_DATA:-$HOME/.cache/cluscomp}"
export CLUSCOMP_DATA="$DATA"
step() { echo; echo "==== [test] $* ===="; }

step "setup"
scripts/setup.sh --test-env

step "build"
# CUDA code is compiled (never run: no GPU here) for sm_80 and sm_90, the two architectures the
# kernels are checked for; a user's build keeps the four defaults of CMakeLists.txt. Only read by
# the build folder's first configure (CMake caches the architectures).
export CUDAARCHS="${CUDAARCHS:-80;90}"
scripts/build.sh

# Reference data from implementations we did not write, made in the test-only venv; each script
# writes OUTDIR/manifest.json last, and is re-run whenever the script is newer than its output.
reference() {  # [PY=python] reference NAME SCRIPT ARGS... (the script gets ARGS... then its output dir)
  local out="$DATA/reference/$1" script="$ROOT/$2"
  shift 2
  if [[ -f "$out/manifest.json" && "$out/manifest.json" -nt "$script" ]]; then
    echo "cached: $out"
  else
    rm -rf "$out"
    "${PY:-$DATA/venv-test/bin/python}" "$script" "$@" "$out"
  fi
}
MODEL="$DATA/models/SmolLM2-135M-Instruct.Q4_1.gguf"
EVAL_TEXT="$DATA/text/kjv.evaluation.txt"

step "reference: every tensor of the real model dequantised by the PyPI gguf package"
reference gguf_dump tests/model/gguf_dump.py "$MODEL"

step "reference: token ids of the real model's tokenizer from HF tokenizers (PyPI)"
reference tokenizer tests/model/tokenizer_dump.py "$MODEL" "$EVAL_TEXT"

step "reference: NumPy float64 LLaMA forward of the real model (logits, greedy, NLL, perplexity; a few minutes)"
reference llama_numpy tests/model/llama_numpy_ref.py "$MODEL" "$EVAL_TEXT"

step "reference: a clustered LLaMA block's output and codebook gradients by PyTorch autograd (python3-torch)"
PY=/usr/bin/python3 reference train_block_torch tests/model/train_block_torch_ref.py

step "install, then build examples/consumer against the installed package"
rm -rf "$BUILD/install" "$BUILD/consumer"
cmake --install "$BUILD" --prefix "$BUILD/install" >/dev/null
cmake -S examples/consumer -B "$BUILD/consumer" -DCMAKE_PREFIX_PATH="$BUILD/install" \
      -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD/consumer" -j "$(nproc)"
"$BUILD/consumer/cluscomp_consumer"

step "fuzz the GGUF and safetensors parsers (ASan + UBSan, short run)"
scripts/fuzz.sh "${CLUSCOMP_FUZZ_SECONDS:-30}"

step "ctest"
ctest --test-dir "$BUILD" -L 'cpu|model|gpu' --output-on-failure -j "$(nproc)"
