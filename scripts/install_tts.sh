#!/usr/bin/env bash
# Offline TTS engines for scripts/make_demo_corpus.py (placeholder; completed by the data recipe work).
set -euo pipefail
exit 0
