#!/usr/bin/env bash
# LibriSpeech pruned-transducer recipe, end to end: corpus -> features/BPE -> train -> decode -> WER table.
#
#   bash recipes/librispeech/run.sh                          # the offline demo corpus (synthesised), CPU, small model
#   bash recipes/librispeech/run.sh --dl-dir /data/librispeech --experiment librispeech_l12 \
#        --exp-dir exp/l12 --nproc 8                         # real LibriSpeech on 8 GPUs
# Options: --stage/--stop-stage, --dl-dir, --experiment, --exp-dir, --nproc, --vocab-size (BPE units; default
# the experiment's model.vocab_size: 64 for the demo, whose 9 h are too few for 500 pieces, else 500), --lm-order
# (token n-gram LM of prepare.sh stage 5; default 8 for up to 64 units, else 6), --work-dir, and extra arguments:
# --demo-args, --prepare-args, --train-args (Hydra overrides), --decode-methods, --decode-args.
#
# Stages (--stage N --stop-stage M, inclusive):
#   0  synthesise the demo corpus (only when --dl-dir is the demo default)
#   1  prepare.sh: manifests, fbank (+speed perturbation), BPE, token n-gram LM
#   2  train (torchrun when --nproc > 1)
#   3  decode: greedy, modified beam search, and modified beam search with shallow fusion of the token LM and
#      the lexicon and word 3-gram of prepare.sh stage 5 on every test set; WER table
#   4  export the training loss curve to exp_dir/loss.png
#   5  deployment: export.sh exports the model (ONNX fp32 + int8 for sherpa-onnx, TorchScript) to exp_dir/onnx and
#      decodes the test sets with sherpa-onnx; its WER is printed beside decode.py's
# Every stage is safe to re-run: finished work is skipped and training resumes from its latest checkpoint.
# Relative paths (download/, data/, exp/) are under --work-dir, by default this recipe's folder.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}

stage=0
stop_stage=5
demo_dir=download/demo
dl_dir=$demo_dir
experiment=demo        # conf/experiment/<name>.yaml: the whole training set-up
exp_dir=exp/demo
nproc=1
lm_order=""           # token n-gram LM for shallow fusion (prepare.sh stage 5); empty: 8 for the demo's letters, else 6
vocab_size=""         # BPE units for prepare.sh; empty: the experiment's model.vocab_size (demo 64, else 500)
work_dir=$HERE
demo_args=""          # extra arguments for scripts/make_demo_corpus.py (the CI test makes a tiny corpus)
prepare_args=""       # extra arguments for prepare.sh (e.g. --musan-dir, --jobs)
train_args=""         # extra Hydra overrides for train.py
decode_methods="greedy modified_beam_search modified_beam_search_lm"
decode_args=""        # extra Hydra overrides for decode.py

usage() { sed -n '2,22p' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --dl-dir) dl_dir=$2; shift 2 ;;
    --experiment) experiment=$2; shift 2 ;;
    --exp-dir) exp_dir=$2; shift 2 ;;
    --nproc) nproc=$2; shift 2 ;;
    --vocab-size) vocab_size=$2; shift 2 ;;
    --lm-order) lm_order=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --demo-args) demo_args=$2; shift 2 ;;
    --prepare-args) prepare_args=$2; shift 2 ;;
    --train-args) train_args=$2; shift 2 ;;
    --decode-methods) decode_methods=$2; shift 2 ;;
    --decode-args) decode_args=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

[ -x "$PY" ] || { echo "run.sh: $PY not found; run 'bash scripts/setup.sh' first" >&2; exit 1; }
if [ -z "$vocab_size" ]; then  # the experiment's model.vocab_size: one place says it (conf/experiment, conf/model)
  set -f
  # shellcheck disable=SC2086
  vocab_size=$("$PY" "$HERE/train.py" experiment="$experiment" $train_args --cfg job --package model \
    | awk '$1 == "vocab_size:" {print $2}')
  set +f
  [[ "$vocab_size" =~ ^[0-9]+$ ]] || { echo "run.sh: cannot read model.vocab_size of experiment=$experiment" >&2; exit 2; }
fi
if [ -z "$lm_order" ]; then
  if [ "$vocab_size" -le 64 ]; then lm_order=8; else lm_order=6; fi  # letters need longer contexts than pieces
fi
mkdir -p "$work_dir"
cd "$work_dir"
log() { echo "$(date '+%F %T') [run.sh] $*"; }
t_start=$(date +%s)

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if [ "$dl_dir" = "$demo_dir" ]; then
    log "stage 0: demo corpus in $demo_dir"
    # shellcheck disable=SC2086
    "$PY" "$ROOT/scripts/make_demo_corpus.py" --out "$demo_dir" $demo_args
  else
    log "stage 0: using the corpus in $dl_dir"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  # The demo corpus already speaks each sentence at one of several speeds: no speed-perturbed copies (the 20-minute
  # budget sees each utterance 5 times as it is); --prepare-args "--perturb-speed true" brings them back.
  demo_prepare=()
  [ "$dl_dir" = "$demo_dir" ] && demo_prepare=(--perturb-speed false)
  log "stage 1: prepare.sh --dl-dir $dl_dir --vocab-size $vocab_size --lm-order $lm_order ${demo_prepare[*]} $prepare_args"
  # shellcheck disable=SC2086
  bash "$HERE/prepare.sh" --dl-dir "$dl_dir" --vocab-size "$vocab_size" --lm-order "$lm_order" "${demo_prepare[@]}" \
    $prepare_args
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "stage 2: train experiment=$experiment -> $exp_dir"
  launcher=("$PY")
  [ "$nproc" -gt 1 ] && launcher=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$nproc")
  set -f  # Hydra overrides such as test_sets=[a,b] are words, not file patterns
  # shellcheck disable=SC2086
  "${launcher[@]}" "$HERE/train.py" experiment="$experiment" trainer.exp_dir="$exp_dir" $train_args
  set +f
  "$PY" -m asr.run_info --exp-dir "$exp_dir" --write || log "no $exp_dir/run_info.json written"  # batches, precision, CPU
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  bash "$ROOT/scripts/decode_stage.sh" "$PY" "$HERE/decode.py" "$exp_dir" "data/lm_bpe_${vocab_size}" "$lm_order" \
    "$decode_methods" "$decode_args"
  "$PY" -m asr.run_info --exp-dir "$exp_dir" || true  # how much training that was, in what precision, on what CPU
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: loss curve -> $exp_dir/loss.png"
  "$PY" "$ROOT/scripts/plot_losses.py" "$exp_dir/tensorboard" "$exp_dir/loss.png" || log "no loss curve written"
fi
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  test_dirs=()
  for d in "$dl_dir"/LibriSpeech/test-clean "$dl_dir"/LibriSpeech/test-other; do [ -d "$d" ] && test_dirs+=("$d"); done
  if [ "${#test_dirs[@]}" -eq 0 ]; then
    log "stage 5: no test-clean / test-other under $dl_dir/LibriSpeech; export only"
    "$PY" -m asr.export.cli --exp-dir "$exp_dir" --out "$exp_dir/onnx" --int8 --jit
  else
    log "stage 5: export $exp_dir -> $exp_dir/onnx, decode ${test_dirs[*]} with sherpa-onnx"
    bash "$HERE/export.sh" --exp-dir "$exp_dir" "${test_dirs[@]}"
  fi
fi
log "done in $(( $(date +%s) - t_start )) s"
