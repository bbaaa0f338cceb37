#!/usr/bin/env bash
# Builds the libFuzzer harnesses in fuzz/ with clang (AddressSanitizer + UndefinedBehaviorSanitizer,
# any UB is fatal) and runs each for SECONDS (default 60) from the committed seed corpus in
# fuzz/corpus/<name>/. New inputs go to a scratch corpus, never into the repository; a crash leaves
# its input in build-fuzz/ and fails the script.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${1:-60}"
OUT="${CLUSCOMP_FUZZ_DIR:-$ROOT/build-fuzz}"
CXX="${CLUSCOMP_FUZZ_CXX:-clang++-14}"
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (scripts/setup.sh installs clang-14)" >&2; exit 1; }
mkdir -p "$OUT"
status=0
for src in "$ROOT"/fuzz/fuzz_*.cpp; do
  name="$(basename "$src" .cpp)"
  bin="$OUT/$name"
  if [[ ! -x "$bin" || "$src" -nt "$bin" || -n "$(find "$ROOT/include" -newer "$bin" -name '*.hpp' -print -quit)" ]]; then
    echo "[fuzz] building $name"
    "$CXX" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
      -I"$ROOT/include" "$src" -o "$bin"
  fi
  corpus="$OUT/corpus_$name"
  mkdir -p "$corpus"
  seeds="$ROOT/fuzz/corpus/${name#fuzz_}"
  echo "[fuzz] running $name for ${SECONDS_EACH}s"
  dirs=("$corpus")
  [[ -d "$seeds" ]] && dirs+=("$seeds")
  if ! (cd "$OUT" && "$bin" -max_total_time="$SECONDS_EACH" "${dirs[@]}" > "$OUT/$name.log" 2>&1); then
    echo "[fuzz] $name FAILED; last lines of $OUT/$name.log:" >&2
    tail -40 "$OUT/$name.log" >&2
    status=1
  else
    grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs" "$OUT/$name.log" | tail -1 || true
    echo "[fuzz] $name: no crash, no sanitizer report"
  fi
done
exit $status
