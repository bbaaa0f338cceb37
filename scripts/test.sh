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
scripts/build.sh

step "independent reference dump of the real model (PyPI gguf package)"
DUMP="$DATA/reference/gguf_dump"
if [[ ! -f "$DUMP/manifest.json" || "$ROOT/tests/model/gguf_dump.py" -nt "$DUMP/manifest.json" ]]; then
  rm -rf "$DUMP"
  "$DATA/venv-test/bin/python" tests/model/gguf_dump.py "$DATA/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$DUMP"
else
  echo "cached: $DUMP"
fi

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
