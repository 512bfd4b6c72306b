#!/usr/bin/env bash
# The BPE and LM stages shared by the recipes' prepare.sh (recipes/librispeech, recipes/custom): one stage a call.
#   bash scripts/lang_stage.sh bpe PY STAGE MARKER VOCAB_SIZE
#   bash scripts/lang_stage.sh lm PY STAGE MARKER VOCAB_SIZE LM_ORDER WORD_LM_ORDER [LM_TEXT LM_MAX_LINES]
# bpe: sentencepiece unigram model on the train transcripts of data/manifests -> data/lang_bpe_<VOCAB_SIZE>/bpe.model.
# lm: token n-gram of LM_ORDER (and lexicon, word n-gram of WORD_LM_ORDER, 0 = none) -> data/lm_bpe_<VOCAB_SIZE>/,
# trained on LM_TEXT's first LM_MAX_LINES lines (0 = all) when that file exists, else on the train transcripts.
# STAGE numbers the stage in the messages; MARKER is the file left when the stage is done (skipped while it exists
# with its output). Run from the recipe's work directory with PYTHONPATH reaching asr (as prepare.sh does).
# MANIFEST_PREFIX (environment, default librispeech): the manifests read are data/manifests/<prefix>_*.jsonl.gz.
set -euo pipefail
usage() { sed -n '2,9p' "$0" >&2; exit 2; }
[ $# -ge 5 ] || usage
what=$1; PY=$2; stage=$3; marker=$4; vocab_size=$5
log() { echo "$(date '+%F %T') [prepare.sh] $*"; }
timed() {  # timed NAME CMD...: run and report the wall time of a stage
  local name=$1 t0; shift; t0=$(date +%s)
  "$@"
  log "$name took $(( $(date +%s) - t0 )) s"
}
lang_dir="data/lang_bpe_${vocab_size}"
prefix=${MANIFEST_PREFIX:-librispeech}

case "$what" in
  bpe)
    [ $# -eq 5 ] || usage
    if [ -f "$marker" ] && [ -f "$lang_dir/bpe.model" ]; then
      log "stage $stage: $lang_dir/bpe.model already trained"
    else
      log "stage $stage: BPE ($vocab_size units, unigram) -> $lang_dir/bpe.model"
      timed "stage $stage" "$PY" -m asr.data.bpe --manifests data/manifests --lang-dir "$lang_dir" \
        --vocab-size "$vocab_size" \
        --prefix "$prefix"
      touch "$marker"
    fi
    ;;
  lm)
    [ $# -eq 7 ] || [ $# -eq 9 ] || usage
    lm_order=$6; word_lm_order=$7; lm_text=${8:-}; lm_max_lines=${9:-0}
    lm_out="data/lm_bpe_${vocab_size}/tokens_${lm_order}gram.arpa"
    if [ -f "$marker" ] && [ -f "$lm_out" ]; then
      log "stage $stage: $lm_out already trained"
      exit 0
    fi
    if [ -z "$lm_text" ]; then
      src=(--manifests data/manifests --prefix "$prefix")
      log "stage $stage: ${lm_order}-gram token LM on the train transcripts -> $lm_out"
    else
      if [ -f "$lm_text" ]; then
        src=(--text "$lm_text" --max-lines "$lm_max_lines")
      else
        log "stage $stage: no $lm_text; the LM is trained on the train transcripts"
        src=(--manifests data/manifests --prefix "$prefix")
      fi
      log "stage $stage: ${lm_order}-gram token LM -> $lm_out"
    fi
    timed "stage $stage" "$PY" -m asr.lm.token_lm --bpe-model "$lang_dir/bpe.model" --order "$lm_order" \
      --word-order "$word_lm_order" --out "$lm_out" "${src[@]}"
    touch "$marker"
    ;;
  *) usage ;;
esac
