#!/usr/bin/env bash
# The main job on the real model, from scratch: setup (idempotent) -> build -> inspect the real
# model (architecture + per-tensor summary) -> round-trip it through our GGUF and safetensors
# writers, checking every value bit for bit -> perplexity on the evaluation text (a few windows)
# -> a short generation -> compress the projection matrices to about 4, 3 and 2 bits per weight
# (k-means iterations: CLUSCOMP_DEMO_ITERATIONS, default 10, a demo-scale setting; the reference
# runs 20; activation-aware from the calibration text unless CLUSCOMP_DEMO_ACTIVATIONS=0) ->
# perplexity of each -> block-wise calibration of each against the original model on
# the calibration text (cluscomp calibrate defaults: 16 windows of 256 tokens, 2 epochs, a few
# minutes per model; lr 1e-3 instead of the reference's 5e-3: docs/results.md) -> perplexity of
# each -> a generation from the calibrated 4-bpw model.
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
echo; echo "==== [demo] perplexity of the real model on the evaluation text (first ${CLUSCOMP_DEMO_WINDOWS:-3} windows of 2048 tokens) ===="
"$CLI" eval "$MODEL" "$DATA/text/kjv.evaluation.txt" --max-windows "${CLUSCOMP_DEMO_WINDOWS:-3}" --threads 2

echo; echo "==== [demo] generation: chat template, greedy ===="
"$CLI" generate "$MODEL" "What is the capital of France?" --max-tokens 48 --threads 2

echo; echo "==== [demo] generation: plain continuation, temperature 0.8, top-p 0.9, seed 7 ===="
"$CLI" generate "$MODEL" "And God said, Let there be light:" --raw --max-tokens 48 --temperature 0.8 --top-p 0.9 \
  --seed 7 --threads 2

ITERS="${CLUSCOMP_DEMO_ITERATIONS:-10}"
WIN="${CLUSCOMP_DEMO_WINDOWS:-3}"
EVAL="$DATA/text/kjv.evaluation.txt"
# Activation-aware clustering (input statistics from the calibration text; docs/architecture.md);
# CLUSCOMP_DEMO_ACTIVATIONS=0 gives the paper's data-free clustering.
if [[ "${CLUSCOMP_DEMO_ACTIVATIONS:-1}" == 0 ]]; then AWARE=(); AWARE_NOTE="data-free"
else AWARE=(--activations "$DATA/text/kjv.calibration.txt"); AWARE_NOTE="activation-aware"; fi
for b in 4 3 2; do
  echo; echo "==== [demo] compress to about $b bpw (--bpw $b, $ITERS k-means iterations, ${AWARE_NOTE}; resumable) ===="
  "$CLI" compress "$MODEL" --out "$OUT/smollm2-cc$b.safetensors" --bpw "$b" --iterations "$ITERS" "${AWARE[@]}" --threads 2
  echo; echo "==== [demo] perplexity of the ~$b-bpw model, clustering only (first $WIN windows) ===="
  "$CLI" eval "$OUT/smollm2-cc$b.safetensors" "$EVAL" --max-windows "$WIN" --threads 2
  echo; echo "==== [demo] block-wise calibration of the ~$b-bpw model on the calibration text (CLUSCOMP.md §2; demo-scale defaults) ===="
  "$CLI" calibrate "$MODEL" "$OUT/smollm2-cc$b.safetensors" "$DATA/text/kjv.calibration.txt" \
    --out "$OUT/smollm2-cal$b.safetensors" --lr "${CLUSCOMP_DEMO_LR:-1e-3}" --threads 2
  echo; echo "==== [demo] perplexity of the calibrated ~$b-bpw model (first $WIN windows) ===="
  "$CLI" eval "$OUT/smollm2-cal$b.safetensors" "$EVAL" --max-windows "$WIN" --threads 2
done

echo; echo "==== [demo] generation from the calibrated ~4-bpw model: chat template, greedy ===="
"$CLI" generate "$OUT/smollm2-cal4.safetensors" "What is the capital of France?" --max-tokens 48 --threads 2

echo; echo "[demo] done. Outputs in $OUT"
