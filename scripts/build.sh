#!/usr/bin/env bash
# Configures and builds cluscomp in ${CLUSCOMP_BUILD_DIR:-build} (Release). Extra arguments are
# passed to `cmake --build` (e.g. --target cluscomp_cli). Used by test.sh, demo.sh and bench.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${CLUSCOMP_BUILD_DIR:-$ROOT/build}"
JOBS="${CLUSCOMP_JOBS:-$(nproc)}"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$JOBS" "$@"
