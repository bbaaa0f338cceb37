#!/usr/bin/env bash
# Builds the llama.cpp peer of `scripts/bench.sh runtime`, cached in $CLUSCOMP_DATA:
#   1. the PyPI source distribution of llama-cpp-python (pinned version + SHA-256), which vendors
#      llama.cpp under vendor/llama.cpp (the only registry route to llama.cpp from this machine);
#   2. libllama + ggml from it with CMake: CPU only, Release, GGML_NATIVE=ON (tuned to this
#      machine's CPU: a local benchmark, never shipped), no BLAS, no tools, no network code;
#   3. bench/llamacpp_peer.cpp (ours) against that libllama.
# On success prints the path of the llamacpp_peer binary on stdout (and nothing else; progress goes
# to stderr, build output to $DIR/build.log). On failure exits non-zero with one line
# `llama.cpp unavailable: REASON` on stdout (and stderr), so the runtime benchmark can still run
# and say why the llama.cpp row is missing.
#   bench/llamacpp_build.sh [--rebuild]
set -uo pipefail

DATA="${CLUSCOMP_DATA:-$HOME/.cache/cluscomp}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Pinned input. The sdist vendors llama.cpp at the commit its release was cut from.
LCP_VERSION="0.3.36"
LCP_SDIST="llama_cpp_python-${LCP_VERSION}.tar.gz"
LCP_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

DIR="$DATA/llamacpp-$LCP_VERSION"
SRC="$DIR/src"          # the extracted sdist
BLD="$DIR/build"        # CMake build of vendor/llama.cpp
PREFIX="$DIR/install"   # cmake --install of it
BIN="$DIR/llamacpp_peer"
LOG="$DIR/build.log"

fail() { echo "llama.cpp unavailable: $*" >&2; echo "llama.cpp unavailable: $*"; exit 1; }
say() { echo "[llamacpp] $*" >&2; }
sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

[[ "${1:-}" == "--rebuild" ]] && rm -rf "$DIR"
mkdir -p "$DIR" "$DATA/downloads" || fail "cannot create $DIR"
command -v cmake >/dev/null || fail "cmake not found"
command -v g++ >/dev/null || fail "g++ not found"

# The benchmark binary is rebuilt whenever our source is newer than it (cheap); the library only
# when its install stamp is missing.
if [[ ! -f "$PREFIX/.stamp" ]]; then
  if ! sha_ok "$DATA/downloads/$LCP_SDIST" "$LCP_SHA256"; then
    say "downloading the llama-cpp-python==$LCP_VERSION source distribution from PyPI (77 MB)"
    rm -f "$DATA/downloads/$LCP_SDIST"
    python3 -m pip download --quiet --no-binary :all: --no-deps --disable-pip-version-check \
      "llama-cpp-python==$LCP_VERSION" -d "$DATA/downloads" >&2 ||
      fail "pip download llama-cpp-python==$LCP_VERSION failed (no access to PyPI?)"
    sha_ok "$DATA/downloads/$LCP_SDIST" "$LCP_SHA256" ||
      fail "$LCP_SDIST: SHA-256 differs from the pinned $LCP_SHA256"
  fi
  rm -rf "$SRC" "$BLD" "$PREFIX"
  mkdir -p "$SRC"
  tar xzf "$DATA/downloads/$LCP_SDIST" -C "$SRC" --strip-components=1 || fail "cannot extract $LCP_SDIST"
  LLAMA="$SRC/vendor/llama.cpp"
  [[ -f "$LLAMA/CMakeLists.txt" ]] || fail "$LCP_SDIST has no vendor/llama.cpp/CMakeLists.txt"
  say "building libllama + ggml (CPU, Release, GGML_NATIVE) in $BLD; log: $LOG"
  {
    cmake -S "$LLAMA" -B "$BLD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
      -DGGML_NATIVE=ON -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF \
      -DGGML_CCACHE=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
      -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DCMAKE_INSTALL_PREFIX="$PREFIX" &&
      cmake --build "$BLD" -j"$(nproc)" --target llama &&
      cmake --install "$BLD"
  } >"$LOG" 2>&1 || fail "the CMake build of vendor/llama.cpp failed; last lines of $LOG: $(tail -3 "$LOG" | tr '\n' ' ')"
  [[ -f "$PREFIX/include/llama.h" ]] || fail "no llama.h under $PREFIX/include after the install"
  date -u +%FT%TZ >"$PREFIX/.stamp"
fi

SRC_CPP="$ROOT/bench/llamacpp_peer.cpp"
if [[ ! -x "$BIN" || "$SRC_CPP" -nt "$BIN" || "$PREFIX/.stamp" -nt "$BIN" ]]; then
  LIBDIR="$PREFIX/lib"
  [[ -d "$LIBDIR" ]] || LIBDIR="$PREFIX/lib64"
  g++ -std=c++17 -O2 -Wall -Wextra -o "$BIN.tmp" "$SRC_CPP" -I"$PREFIX/include" -L"$LIBDIR" \
    -Wl,--disable-new-dtags,-rpath,"$LIBDIR" -lllama -lggml -lggml-base -lpthread >>"$LOG" 2>&1 ||
    fail "bench/llamacpp_peer.cpp did not compile or link against $PREFIX; see $LOG"
  mv "$BIN.tmp" "$BIN"
fi
echo "$BIN"
