#!/usr/bin/env bash
# LibriSpeech data preparation (icefall-style stages). Run from recipes/librispeech; writes under data/.
#
#   bash prepare.sh --dl-dir download/demo                  # the offline demo corpus (scripts/make_demo_corpus.py)
#   bash prepare.sh --dl-dir /data/librispeech --musan-dir /data/musan --stage 1 --stop-stage 4
#
# Options: --dl-dir DIR (holds LibriSpeech/; default download), --stage N, --stop-stage M (inclusive),
#          --musan-dir DIR, --vocab-size N (BPE units, default 500), --jobs N (parallel jobs, default 2),
#          --perturb-speed true|false (stage 2's 0.9/1.1 copies of the training subsets; default true),
#          --lm-order N, --word-lm-order N, --lm-max-lines N (stage 5: token n-gram order, default 6; word n-gram
#          order, default 3, 0 = none; LM text lines read, default 1000000, 0 = all),
#          --no-download (stage 0 never downloads; by default a missing LibriSpeech/ is fetched with lhotse when
#          openslr.org can be reached, as icefall does).
# Stages:
#   0  find the corpus: DIR/LibriSpeech/<subset>/ (downloaded with lhotse when missing and there is network)
#   1  manifests of every subset found -> data/manifests (+ MUSAN's with --musan-dir); bad input skipped, counted
#   2  80-dim fbank (LilcomChunkyWriter), speed perturbation 0.9/1.1 for train subsets, validation, train cuts
#      combined and shuffled -> data/fbank/librispeech_cuts_{<subset>,train-all-shuf}.jsonl.gz
#   3  MUSAN fbank -> data/fbank/musan_cuts.jsonl.gz (when stage 1 made MUSAN manifests)
#   4  sentencepiece unigram model on the train transcripts -> data/lang_bpe_<N>/bpe.model (<blk>=0,
#      <sos/eos>=1, <unk>=2)
#   5  token n-gram LM (interpolated Kneser-Ney over the BPE pieces) on DIR/lm/librispeech-lm-norm.txt.gz (where
#      LibriSpeech's LM corpus goes; the demo corpus writes its own) or, without it, the train transcripts
#      -> data/lm_bpe_<N>/tokens_<order>gram.arpa, words.txt (the lexicon) and words_<order>gram.arpa, for
#      modified beam search with shallow fusion
# Each finished stage leaves data/.done.stage<N>.<what>; a re-run skips it (delete the marker to redo).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3

stage=0
stop_stage=5
dl_dir=download
musan_dir=""
vocab_size=500
jobs=2
perturb_speed=true
lm_order=6
word_lm_order=3
lm_max_lines=1000000
download=1

usage() { sed -n '2,25p' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --dl-dir) dl_dir=$2; shift 2 ;;
    --musan-dir) musan_dir=$2; shift 2 ;;
    --vocab-size) vocab_size=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --perturb-speed) perturb_speed=$2; shift 2 ;;
    --lm-order) lm_order=$2; shift 2 ;;
    --word-lm-order) word_lm_order=$2; shift 2 ;;
    --lm-max-lines) lm_max_lines=$2; shift 2 ;;
    --no-download) download=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "prepare.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
corpus="$dl_dir/LibriSpeech"
mkdir -p data
log() { echo "$(date '+%F %T') [prepare.sh] $*"; }
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
done_marker() { echo "data/.done.stage$1.$2"; }
timed() {  # timed NAME CMD...: run and report the wall time of a stage
  local name=$1 t0; shift; t0=$(date +%s)
  "$@"
  log "$name took $(( $(date +%s) - t0 )) s"
}

if run_stage 0; then
  log "stage 0: corpus in $corpus"
  if [ ! -d "$corpus" ] && [ "$download" = 1 ]; then
    if "$PY" -c "import socket; socket.create_connection(('www.openslr.org', 443), timeout=5).close()" 2>/dev/null; then
      log "no $corpus: downloading LibriSpeech (960 h + dev/test, about 60 GB) into $dl_dir with lhotse"
      "$PY" -c "import sys; from lhotse.recipes import download_librispeech; download_librispeech(sys.argv[1], dataset_parts='librispeech')" "$dl_dir"
    else
      log "no $corpus and no network to download it"
    fi
  fi
  found=""
  for s in dev-clean dev-other test-clean test-other train-clean-100 train-clean-360 train-other-500; do
    [ -d "$corpus/$s" ] && found="$found $s"
  done
  if [ -z "$found" ]; then
    echo "prepare.sh: no LibriSpeech subset under $corpus." >&2
    echo "  Give --dl-dir a folder holding LibriSpeech/<subset>/ (e.g. the demo corpus: python" \
         "scripts/make_demo_corpus.py --out download/demo)." >&2
    exit 1
  fi
  log "subsets found:$found"
  case "$found" in *train*) ;; *) log "WARNING: no training subset (train-*) found";; esac
fi

# data/ belongs to one corpus: finished subsets are re-used, so mixing two corpora would go unnoticed.
corpus_abs=$(cd "$dl_dir" 2>/dev/null && pwd || echo "$dl_dir")
corpus_id=$(echo "$corpus_abs" | md5sum | cut -c1-8)
if [ -f data/.corpus ] && [ "$(cat data/.corpus)" != "$corpus_abs" ]; then
  echo "prepare.sh: data/ was prepared from $(cat data/.corpus), not $corpus_abs." >&2
  echo "  Remove data/ (or run from another recipe copy) to prepare this corpus." >&2
  exit 1
fi
[ -d "$corpus" ] && echo "$corpus_abs" > data/.corpus

if run_stage 1; then
  m=$(done_marker 1 "$corpus_id")
  if [ -f "$m" ]; then
    log "stage 1: manifests already made ($m)"
  else
    log "stage 1: manifests -> data/manifests"
    timed "stage 1" "$PY" -m asr.data.prepare --corpus "$corpus" --out data/manifests --jobs "$jobs"
    if [ -n "$musan_dir" ]; then
      timed "stage 1 (MUSAN)" "$PY" -m asr.data.prepare --musan "$musan_dir" --out data/manifests
    fi
    touch "$m"
  fi
fi

if run_stage 2; then
  m=$(done_marker 2 "$corpus_id")
  if [ -f "$m" ]; then
    log "stage 2: features already computed ($m)"
  else
    log "stage 2: fbank (+speed perturbation for train) -> data/fbank"
    timed "stage 2" "$PY" -m asr.data.features --manifests data/manifests --out data/fbank --jobs "$jobs" \
      --perturb-speed "$perturb_speed"
    touch "$m"
  fi
fi

if run_stage 3; then
  if ls data/manifests/musan_recordings_*.jsonl.gz >/dev/null 2>&1; then
    m=$(done_marker 3 musan)
    if [ -f "$m" ]; then
      log "stage 3: MUSAN features already computed"
    else
      log "stage 3: MUSAN fbank -> data/fbank/musan_cuts.jsonl.gz"
      timed "stage 3" "$PY" -m asr.data.features --manifests data/manifests --out data/fbank --musan --jobs "$jobs"
      touch "$m"
    fi
  else
    log "stage 3: no MUSAN manifests (stage 1 without --musan-dir); skipped"
  fi
fi

if run_stage 4; then  # scripts/lang_stage.sh: the BPE and LM stages of both recipes
  bash "$ROOT/scripts/lang_stage.sh" bpe "$PY" 4 "$(done_marker 4 "${corpus_id}.bpe${vocab_size}")" "$vocab_size"
fi
if run_stage 5; then
  bash "$ROOT/scripts/lang_stage.sh" lm "$PY" 5 \
    "$(done_marker 5 "${corpus_id}.bpe${vocab_size}.lm${lm_order}.words${word_lm_order}")" "$vocab_size" \
    "$lm_order" "$word_lm_order" "$dl_dir/lm/librispeech-lm-norm.txt.gz" "$lm_max_lines"
fi
log "done"
