#!/usr/bin/env bash
# The GPU check of issue 25: install the carried wheels that this Python lacks, then run the steps, writing
# results.json and results.md into the output folder. See bench/gpu/README.md.
#
#   bench/gpu/run.sh [--quick] [--cpu] [--out DIR] [--steps a,b] [--demo-exp DIR]
#
#   --quick     the same steps with fewer repetitions: about 2 minutes on an H200 (default: about 8)
#   --cpu       the CPU fallback at a tiny size (automatic when torch sees no CUDA device)
#   --out DIR   output folder (default: bench/gpu/out/<UTC time>)
#   --steps     comma-separated subset of pytest_cuda,losses,train_step,distributed,decode
#   --limit S=N override step S's time limit to N seconds (repeatable)
#   --demo-exp  experiment directory of the demo model, decoded too when given
# Environment: PYTHON (default python3), ASR_GPU_SITE (install folder, default bench/gpu/.site).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
py=${PYTHON:-python3}
profile=auto
out=""
extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) profile=quick ;;
    --cpu) profile=cpu ;;
    --out) out=$2; shift ;;
    --steps|--demo-exp|--limit) extra+=("$1" "$2"); shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
out=${out:-$repo/bench/gpu/out/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
site=${ASR_GPU_SITE:-$here/.site}

# 1. the wheels this Python lacks, into $site (never over the machine's own packages, torch included)
"$py" "$here/setup_env.py" --wheels "$here/wheels" --list "$here/wheels.txt" --target "$site" \
  --report "$out/setup.json" || echo "run.sh: set-up failed (see above); running the steps anyway" >&2

# 2. our package from the source tree (pyproject pins torch and Python < 3.12: not installed, only on the path)
export PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
if [[ $profile == auto ]] && ! "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "run.sh: no CUDA device; running the CPU fallback" >&2
  profile=cpu
fi
cd "$repo"
exec "$py" -m bench.gpu.check --out "$out" --profile "$profile" ${extra[@]+"${extra[@]}"}
