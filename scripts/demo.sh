#!/usr/bin/env bash
# The main job on the real model, from scratch: setup (idempotent) -> build -> inspect the real
# model (architecture + per-tensor summary) -> round-trip it through our GGUF and safetensors
# writers, checking every value bit for bit. Later issues extend this to compress, evaluate and
# generate.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${CLUSCOMP_BUILD_DIR:-$ROOT/build}"
DATA="${CLUSCOMP_DATA:-$HOME/.cache/cluscomp}"
export CLUSCOMP_DATA="$DATA"
MODEL="$DATA/models/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT="${CLUSCOMP_DEMO_OUT:-$DATA/demo}"

"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh" --target cluscomp_cli
CLI="$BUILD/examples/cli/cluscomp"

echo; echo "==== [demo] inspect the real model ===="
"$CLI" inspect "$MODEL"

echo; echo "==== [demo] round trip through our writers ===="
"$CLI" roundtrip "$MODEL" --out "$OUT"

echo; echo "==== [demo] the text ===="
for f in kjv.calibration.txt kjv.evaluation.txt; do
  printf '%-22s %9d bytes %7d lines  first line: %s\n' "$f" "$(stat -c %s "$DATA/text/$f")" \
    "$(wc -l < "$DATA/text/$f")" "$(head -1 "$DATA/text/$f")"
done
echo; echo "[demo] done. Outputs in $OUT"
