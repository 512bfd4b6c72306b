#!/usr/bin/env bash
# Data preparation of any corpus the importers read (recipes/custom). Run from the work dir; writes under data/.
#
#   bash prepare.sh --corpus /data/mycorpus --format folder
#   bash prepare.sh --corpus /kaldi/s5/data --format kaldi --vocab-size 256 --import-args "--case keep"
#
# Options: --corpus DIR (or a .tsv/.csv file), --format folder|tsv|kaldi|lhotse, --stage N, --stop-stage M
#          (inclusive), --vocab-size N (BPE units, default 500), --jobs N (default 2), --perturb-speed true|false
#          (stage 1's 0.9/1.1 copies of the train sets; default true), --lm-order N, --word-lm-order N (stage 3;
#          defaults 6 and 3, 0 = no word LM), --import-args "..." (more options of python -m asr.data.importers:
#          --case, --punctuation, --numbers, --min-duration, --max-duration, --dev-fraction, --test-fraction,
#          --seed, ...; see its --help).
# Stages:
#   0  import -> data/manifests/custom_{recordings,supervisions}_<set>.jsonl.gz and import_report.{json,txt}
#      (unreadable audio, missing/empty transcripts, durations outside the limits: skipped, counted, reported;
#      a corpus without dev/test sets is split, seeded, by speaker)
#   1  80-dim fbank, speed perturbation of the train sets -> data/fbank (asr.data.features, as LibriSpeech's)
#   2  sentencepiece unigram model on the train transcripts -> data/lang_bpe_<N>/bpe.model
#   3  token n-gram LM (and lexicon, word n-gram) on the train transcripts -> data/lm_bpe_<N>/, for
#      modified beam search with shallow fusion (the LM upper-cases its text: with --case other than upper,
#      decode without the _lm method)
# Each finished stage leaves data/.done.stage<N>.<what>; a re-run skips it (delete the marker to redo).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3

corpus=""
format=""
stage=0
stop_stage=3
vocab_size=500
jobs=2
perturb_speed=true
lm_order=6
word_lm_order=3
import_args=""

usage() { sed -n '2,25p' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus) corpus=$2; shift 2 ;;
    --format) format=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --vocab-size) vocab_size=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --perturb-speed) perturb_speed=$2; shift 2 ;;
    --lm-order) lm_order=$2; shift 2 ;;
    --word-lm-order) word_lm_order=$2; shift 2 ;;
    --import-args) import_args=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "prepare.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
prefix=custom  # manifest names: data/{manifests,fbank}/custom_<kind>_<set>.jsonl.gz (conf/data/custom.yaml's)
export MANIFEST_PREFIX=$prefix  # read by scripts/lang_stage.sh
mkdir -p data
log() { echo "$(date '+%F %T') [prepare.sh] $*"; }
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
timed() {  # timed NAME CMD...: run and report the wall time of a stage
  local name=$1 t0; shift; t0=$(date +%s)
  "$@"
  log "$name took $(( $(date +%s) - t0 )) s"
}

# data/ belongs to one import (corpus, format, options): finished stages are re-used, so mixing would go unnoticed.
if run_stage 0; then
  [ -n "$corpus" ] && [ -n "$format" ] || { echo "prepare.sh: stage 0 needs --corpus and --format" >&2; exit 2; }
  [ -e "$corpus" ] || { echo "prepare.sh: no corpus at $corpus" >&2; exit 1; }
  corpus_abs=$(cd "$(dirname "$corpus")" && echo "$(pwd)/$(basename "$corpus")")
  what="$format $corpus_abs $import_args"
  if [ -f data/.corpus ] && [ "$(cat data/.corpus)" != "$what" ]; then
    echo "prepare.sh: data/ was prepared from '$(cat data/.corpus)', not '$what'." >&2
    echo "  Remove data/ (or use another --work-dir) to prepare this corpus." >&2
    exit 1
  fi
  m=data/.done.stage0
  if [ -f "$m" ]; then
    log "stage 0: already imported ($(cat data/.corpus))"
  else
    echo "$what" > data/.corpus
    log "stage 0: import $corpus ($format) -> data/manifests"
    set -f
    # shellcheck disable=SC2086
    timed "stage 0" "$PY" -m asr.data.importers --format "$format" --corpus "$corpus" --out data/manifests \
      --jobs "$jobs" --prefix "$prefix" $import_args
    set +f
    touch "$m"
  fi
fi
[ -f data/.done.stage0 ] || { echo "prepare.sh: no imported corpus in data/ (run stage 0)" >&2; exit 1; }

if run_stage 1; then
  m=data/.done.stage1
  if [ -f "$m" ]; then
    log "stage 1: features already computed"
  else
    log "stage 1: fbank (+speed perturbation for train) -> data/fbank"
    timed "stage 1" "$PY" -m asr.data.features --manifests data/manifests --out data/fbank --jobs "$jobs" \
      --perturb-speed "$perturb_speed" --prefix "$prefix"
    touch "$m"
  fi
fi

if run_stage 2; then  # scripts/lang_stage.sh: the BPE and LM stages of both recipes
  bash "$ROOT/scripts/lang_stage.sh" bpe "$PY" 2 "data/.done.stage2.bpe${vocab_size}" "$vocab_size"
fi
if run_stage 3; then
  bash "$ROOT/scripts/lang_stage.sh" lm "$PY" 3 \
    "data/.done.stage3.bpe${vocab_size}.lm${lm_order}.words${word_lm_order}" "$vocab_size" "$lm_order" "$word_lm_order"
fi
log "done"
