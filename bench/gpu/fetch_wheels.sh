#!/usr/bin/env bash
# Downloads the wheels of bench/gpu/wheels.txt for the GPU machine (CPython 3.12, manylinux x86_64) into
# bench/gpu/wheels/ (git-ignored; run.sh carries it), from the package registry only, and checks their total size.
#
#   bench/gpu/fetch_wheels.sh [DEST]        # DEST defaults to bench/gpu/wheels
# Environment: PYTHON (a Python with pip, default python3), MAX_MB (default 50).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest=${1:-$here/wheels}
py=${PYTHON:-python3}
max_mb=${MAX_MB:-50}
mkdir -p "$dest"

mapfile -t pins < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/wheels.txt" | grep -v '^$')
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64
           --platform manylinux1_x86_64)
for pin in "${pins[@]}"; do
  name=${pin%%==*}
  norm=$(echo "$name" | tr 'A-Z.-' 'a-z__')
  version=${pin#*==}
  if compgen -G "$dest/${norm}-${version}-*.whl" > /dev/null; then
    continue
  fi
  if ! "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --abi cp312 --abi abi3 --abi none "${platforms[@]}" -d "$dest" "$pin" 2> "$dest/.pip.err"; then
    # no wheel for Python 3.12 on the registry: build one from the sdist, accepted only when pure Python
    tmp=$(mktemp -d)
    "$py" -m pip wheel --quiet --no-deps --no-binary=:all: -w "$tmp" "$pin"
    built=$(ls "$tmp"/*.whl)
    case $built in
      *-py3-none-any.whl|*-py2.py3-none-any.whl) mv "$built" "$dest/" ;;
      *) echo "fetch_wheels.sh: $pin has no Python 3.12 wheel and builds a platform wheel ($built)" >&2; exit 1 ;;
    esac
    rm -rf "$tmp"
  fi
done
rm -f "$dest/.pip.err"

# every pin has its wheel, and nothing else is there
missing=0
for pin in "${pins[@]}"; do
  norm=$(echo "${pin%%==*}" | tr 'A-Z.-' 'a-z__')
  compgen -G "$dest/${norm}-${pin#*==}-*.whl" > /dev/null || { echo "fetch_wheels.sh: no wheel for $pin" >&2; missing=1; }
done
[[ $missing == 0 ]] || exit 1
total_kb=$(du -sk "$dest" | cut -f1)
echo "fetch_wheels.sh: ${#pins[@]} wheels, $((total_kb / 1024)) MB in $dest"
if (( total_kb > max_mb * 1024 )); then
  echo "fetch_wheels.sh: over the ${max_mb} MB budget" >&2
  exit 1
fi
