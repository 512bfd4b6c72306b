#!/usr/bin/env bash
# Deployment stage of the recipe: export the trained model (ONNX fp32 + int8 for sherpa-onnx, TorchScript), then
# decode the test folders with sherpa-onnx and write its WER beside decode.py's (exp_dir/sherpa-onnx/).
#   bash recipes/librispeech/export.sh --exp-dir exp/demo [--epoch 0 --avg 1] \
#       download/demo/LibriSpeech/test-clean download/demo/LibriSpeech/dev-clean
# run.sh calls it after decoding (from its work directory); needs the `export` extra (scripts/setup.sh --test).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
exp_dir=exp/demo
ckpt_args=()
methods="greedy modified_beam_search"
while [ $# -gt 0 ]; do
  case "$1" in
    --exp-dir) exp_dir=$2; shift 2 ;;
    --epoch|--avg|--iter|--checkpoint) ckpt_args+=("$1" "$2"); shift 2 ;;
    --use-averaged-model) ckpt_args+=("$1"); shift ;;
    --methods) methods=$2; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    -*) echo "export.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "export.sh: give the test folders to decode" >&2; exit 2; }
log() { echo "$(date '+%F %T') [export.sh] $*"; }

log "export $exp_dir -> $exp_dir/onnx (fp32, int8, jit.pt)"
"$PY" -m asr.export.cli --exp-dir "$exp_dir" "${ckpt_args[@]}" --out "$exp_dir/onnx" --int8 --jit
for method in $methods; do
  for int8 in "" --int8; do
    log "sherpa-onnx $method ${int8:+int8}"
    "$PY" -m asr.export.evaluate --model-dir "$exp_dir/onnx" --out-dir "$exp_dir/sherpa-onnx" --method "$method" \
      $int8 "$@"
  done
done
log "WER summary ($exp_dir, PyTorch and sherpa-onnx)"
printf '%-50s %s\n' "set-method" "WER %"
for f in "$exp_dir"/*/wer-summary-*.txt; do
  [ -f "$f" ] || continue
  name=$(basename "$f" .txt); printf '%-50s %s\n' "${name#wer-summary-}" "$(tail -n 1 "$f" | cut -f2)"
done
