#!/usr/bin/env bash
# Make a fresh machine ready: .venv in the checkout, the `asr` package (editable) and its pinned dependencies.
#   bash scripts/setup.sh           # runtime + demo (TTS engines for the demo corpus) + export (sherpa-onnx)
#   bash scripts/setup.sh --test    # also the test extra and the fast_rnnt loss oracle
# Idempotent: each step is skipped when what it makes is already there and up to date.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
V="$ROOT/.venv"
WITH_TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { echo "[setup] $*"; }

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

# 1. The virtual environment.
if [ ! -x "$V/bin/python" ]; then
  log "creating $V with $PY"
  "$PY" -m venv "$V"
fi

# 2. The package and its pinned dependencies; re-run only when pyproject.toml changed.
# The export extra (onnx, onnxruntime, sherpa-onnx) serves the recipe's deployment stage; the test extra the tests.
extra="[export]"; [ "$WITH_TEST" = 1 ] && extra="[test,export]"
stamp="$V/.asr-install-$(sha1sum pyproject.toml | cut -c1-12)-test$WITH_TEST"
if [ ! -f "$stamp" ]; then
  log "installing asr${extra} (editable) and its dependencies"
  "$V/bin/pip" install -q --disable-pip-version-check -e ".${extra}" 2>&1 | grep -v "is ignored: it is neither" || true
  "$V/bin/python" -c "import asr, torch, torchaudio, lhotse, sentencepiece, hydra" \
    || { echo "setup.sh: the install did not complete" >&2; exit 1; }
  rm -f "$V"/.asr-install-*
  touch "$stamp"
else
  log "asr${extra} already installed"
fi

# 3. Offline TTS engines for the demo corpus (scripts/make_demo_corpus.py).
bash "$ROOT/scripts/install_tts.sh" "$V"

# 4. The loss oracle for tests: fast_rnnt 1.3 built against the venv's torch (docs/fast_rnnt.md).
if [ "$WITH_TEST" = 1 ]; then
  if "$V/bin/python" -c "import fast_rnnt" 2>/dev/null; then
    log "fast_rnnt already built"
  else
    bash "$ROOT/scripts/build_fast_rnnt.sh" "$V"
  fi
fi
log "ready: $V"
