#!/usr/bin/env bash
# Pruned-transducer recipe for your own corpus, end to end: import -> features/BPE -> train -> decode -> WERs.
#
#   bash recipes/custom/run.sh --corpus /data/mycorpus --format folder --work-dir /exp/mycorpus
#   bash recipes/custom/run.sh --corpus /data/list.tsv --format tsv --vocab-size 256 --nproc 4
#   bash recipes/custom/run.sh --corpus /kaldi/s5/data --format kaldi --import-args "--case keep --seed 1"
# Formats (python -m asr.data.importers --help): folder (a.wav + a.txt), tsv (path, text[, speaker] rows; .csv
# too), kaldi (wav.scp with pipes, text, segments, utt2spk), lhotse (manifests or a Shar directory).
# Options: --corpus, --format, --stage/--stop-stage, --work-dir (where data/ and exp/ go; default this folder),
# --experiment (conf/experiment/<name>.yaml, default custom), --exp-dir (default exp/custom), --nproc, --vocab-size
# (BPE units; default the experiment's model.vocab_size, 500), --lm-order (default 8 for up to 64 units, else 6),
# --jobs, and extra arguments: --import-args, --prepare-args, --train-args (Hydra overrides), --decode-methods,
# --decode-args.
#
# Stages (--stage N --stop-stage M, inclusive):
#   0  import the corpus to data/manifests (prepare.sh stage 0): bad input skipped, counted and reported in
#      data/manifests/import_report.{txt,json}; a corpus without dev/test sets is split (seeded, by speaker)
#   1  prepare.sh stages 1-3: fbank (+speed perturbation), BPE model, token n-gram LM
#   2  train (recipes/librispeech/train.py, the library's Hydra entry; torchrun when --nproc > 1)
#   3  decode every test set (recipes/librispeech/decode.py): greedy, modified beam search, and with the LM
#   4  export the training loss curve to exp_dir/loss.png
# Every stage is safe to re-run: finished work is skipped and training resumes from its latest checkpoint.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ENTRY=$ROOT/recipes/librispeech   # train.py and decode.py: thin Hydra entries of the library, shared by recipes
PY=${PY:-$ROOT/.venv/bin/python}

corpus=""
format=""
stage=0
stop_stage=4
experiment=custom
exp_dir=exp/custom
nproc=1
vocab_size=""
lm_order=""
jobs=2
work_dir=$HERE
import_args=""
prepare_args=""
train_args=""
decode_methods="greedy modified_beam_search modified_beam_search_lm"
decode_args=""

usage() { sed -n '2,23p' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus) corpus=$2; shift 2 ;;
    --format) format=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --experiment) experiment=$2; shift 2 ;;
    --exp-dir) exp_dir=$2; shift 2 ;;
    --nproc) nproc=$2; shift 2 ;;
    --vocab-size) vocab_size=$2; shift 2 ;;
    --lm-order) lm_order=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --import-args) import_args=$2; shift 2 ;;
    --prepare-args) prepare_args=$2; shift 2 ;;
    --train-args) train_args=$2; shift 2 ;;
    --decode-methods) decode_methods=$2; shift 2 ;;
    --decode-args) decode_args=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

[ -x "$PY" ] || { echo "run.sh: $PY not found; run 'bash scripts/setup.sh' first" >&2; exit 1; }
if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  [ -n "$corpus" ] && [ -n "$format" ] || { echo "run.sh: --corpus and --format are required for stage 0" >&2; exit 2; }
  corpus=$(cd "$(dirname "$corpus")" && echo "$(pwd)/$(basename "$corpus")")  # absolute: we cd to work_dir
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "$vocab_size" ]; then  # the experiment's model.vocab_size: one place says it (conf/experiment, conf/model)
  set -f
  # shellcheck disable=SC2086
  vocab_size=$("$PY" "$ENTRY/train.py" experiment="$experiment" $train_args --cfg job --package model \
    | awk '$1 == "vocab_size:" {print $2}')
  set +f
  [[ "$vocab_size" =~ ^[0-9]+$ ]] || {
    echo "run.sh: cannot read model.vocab_size of experiment=$experiment" >&2; exit 2; }
fi
if [ -z "$lm_order" ]; then
  if [ "$vocab_size" -le 64 ]; then lm_order=8; else lm_order=6; fi  # letters need longer contexts than pieces
fi
mkdir -p "$work_dir"
cd "$work_dir"
log() { echo "$(date '+%F %T') [run.sh] $*"; }
t_start=$(date +%s)
sets() {  # sets ROLE: Hydra list of the imported sets of a role, e.g. [dev]
  echo "[$("$PY" -m asr.data.importers --out data/manifests --list-sets "$1")]"
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "stage 0: import $corpus ($format)"
  # shellcheck disable=SC2086
  bash "$HERE/prepare.sh" --stage 0 --stop-stage 0 --corpus "$corpus" --format "$format" --jobs "$jobs" \
    --import-args "$import_args" $prepare_args
  cat data/manifests/import_report.txt
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: prepare.sh stages 1-3 (fbank, BPE $vocab_size, ${lm_order}-gram token LM) $prepare_args"
  # shellcheck disable=SC2086
  bash "$HERE/prepare.sh" --stage 1 --stop-stage 3 --vocab-size "$vocab_size" --lm-order "$lm_order" \
    --jobs "$jobs" $prepare_args
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  valid=$(sets dev)
  test=$(sets test)
  [ "$valid" != "[]" ] || { echo "run.sh: no dev set was imported (training validates on one): give the corpus" \
    "a dev* set or import with a --dev-fraction above 0" >&2; exit 1; }
  log "stage 2: train experiment=$experiment -> $exp_dir (valid $valid, test $test)"
  launcher=("$PY")
  [ "$nproc" -gt 1 ] && launcher=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$nproc")
  set -f  # Hydra overrides such as test_sets=[a,b] are words, not file patterns
  # shellcheck disable=SC2086
  "${launcher[@]}" "$ENTRY/train.py" experiment="$experiment" trainer.exp_dir="$exp_dir" \
    model.vocab_size="$vocab_size" data.bpe_model="data/lang_bpe_${vocab_size}/bpe.model" \
    data.valid_sets="$valid" data.test_sets="$test" $train_args
  set +f
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  bash "$ROOT/scripts/decode_stage.sh" "$PY" "$ENTRY/decode.py" "$exp_dir" "data/lm_bpe_${vocab_size}" "$lm_order" \
    "$decode_methods" "$decode_args"
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: loss curve -> $exp_dir/loss.png"
  "$PY" "$ROOT/scripts/plot_losses.py" "$exp_dir/tensorboard" "$exp_dir/loss.png" || log "no loss curve written"
fi
log "done in $(( $(date +%s) - t_start )) s"
