#!/usr/bin/env bash
# `cluscomp calibrate` on a terminal keeps one mean-loss line per epoch (the progress bar is
# cleared first), so the loss curve stays on screen. Runs the command under `script` (util-linux)
# for a pseudo-terminal, on the real model with only o_proj clustered coarsely and 1 window of 16
# tokens, so it takes seconds.
# Usage: calibrate_tty_test.sh CLUSCOMP MODEL.gguf CALIBRATION_TEXT WORK_DIR
# Exit 77 (skipped) without `script`; 1 with the reason on failure.
set -euo pipefail
cli="$1" model="$2" text="$3" work="$4"
command -v script >/dev/null || { echo "skipped: no 'script' (util-linux) for a pseudo-terminal"; exit 77; }
[[ -f "$model" && -f "$text" ]] || { echo "no real model or text ($model, $text): run scripts/setup.sh"; exit 1; }
rm -rf "$work"
mkdir -p "$work"
head -c 20000 "$text" >"$work/text.txt"
"$cli" compress "$model" --out "$work/student.safetensors" --matrices o --d 4 --k 16 --iterations 1 --threads 2 \
  >"$work/compress.log" 2>&1 || { cat "$work/compress.log"; exit 1; }
script -qec "'$cli' calibrate '$model' '$work/student.safetensors' '$work/text.txt' --out '$work/cal.safetensors' \
  --samples 1 --window 16 --epochs 2 --threads 2" /dev/null >"$work/tty.log" 2>&1 || { cat "$work/tty.log"; exit 1; }
# Every block's two epoch lines, each starting with "\r ESC[K" (bar cleared: only on a terminal).
lines=$(grep -c $'\r\033\\[Kblock *[0-9]*/30 epoch [12]/2: mean loss' "$work/tty.log" || true)
if [[ "$lines" != 60 ]]; then
  echo "expected 60 per-epoch loss lines after a cleared bar on a terminal, found $lines:"
  cat -v "$work/tty.log" | tail -20
  exit 1
fi
echo "ok: 60 per-epoch loss lines on a terminal"
