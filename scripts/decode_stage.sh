#!/usr/bin/env bash
# The decoding stage shared by the recipes (recipes/librispeech/run.sh, recipes/custom/run.sh): decode.py with each
# method, shallow fusion of prepare.sh's LMs for modified_beam_search_lm, then the WER table of the experiment.
#   bash scripts/decode_stage.sh PY DECODE_PY EXP_DIR LM_DIR LM_ORDER "METHODS" "DECODE_ARGS"
# LM_DIR holds tokens_<LM_ORDER>gram.arpa, words.txt and words_3gram.arpa (what exists is used; without the token LM
# modified_beam_search_lm is skipped). Run from the recipe's work directory (relative paths as the recipe's).
set -euo pipefail
[ $# -eq 7 ] || { sed -n '2,6p' "$0" >&2; exit 2; }
PY=$1; decode_py=$2; exp_dir=$3; lm_dir=$4; lm_order=$5; decode_methods=$6; decode_args=$7
log() { echo "$(date '+%F %T') [decode] $*"; }

lm="$lm_dir/tokens_${lm_order}gram.arpa"
lexicon="$lm_dir/words.txt"
word_lm="$lm_dir/words_3gram.arpa"
for method in $decode_methods; do
  extra=()
  if [ "$method" = modified_beam_search_lm ]; then
    [ -f "$lm" ] || { log "no $lm (the recipe's LM stage); $method skipped"; continue; }
    extra=(decode.lm="$lm")
    [ -f "$lexicon" ] && extra+=(decode.lexicon="$lexicon")
    [ -f "$lexicon" ] && [ -f "$word_lm" ] && extra+=(decode.word_lm="$word_lm")
  fi
  log "decode $method"
  set -f  # Hydra overrides such as test_sets=[a,b] are words, not file patterns
  # shellcheck disable=SC2086
  "$PY" "$decode_py" exp_dir="$exp_dir" decode="$method" "${extra[@]}" $decode_args
  set +f
done
log "WER summary ($exp_dir)"
printf '%-40s %s\n' "set-method" "WER %"
for f in "$exp_dir"/*/wer-summary-*.txt; do
  [ -f "$f" ] || continue
  name=$(basename "$f" .txt); printf '%-40s %s\n' "${name#wer-summary-}" "$(tail -n 1 "$f" | cut -f2)"
done
