#!/usr/bin/env bash
# Build the loss oracle fast_rnnt==1.3 (k2's RNN-T loss code, an sdist) against the torch in a venv, on CPU.
# Used by tests and benchmarks only. Usage: bash scripts/build_fast_rnnt.sh [VENV]
set -euo pipefail
V=${1:-.venv}
echo "[setup] building fast_rnnt 1.3 against $($V/bin/python -c 'import torch;print(torch.__version__)') (about a minute)"
# fast_rnnt's CMake fetches pybind11 from the network: point it at PyPI's pybind11 sdist of the version torch bundles.
PYB=$($V/bin/python -c "import re,os,torch;h=open(os.path.join(os.path.dirname(torch.__file__),'include/pybind11/detail/common.h')).read();print('.'.join(re.search(r'define PYBIND11_VERSION_'+k+r' (\d+)',h).group(1) for k in ('MAJOR','MINOR','PATCH')))")
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
$V/bin/pip download -q --no-deps --no-binary :all: -d "$D" "pybind11==$PYB" 2>&1 | grep -v "is ignored: it is neither" || true
tar xzf "$D/pybind11-$PYB.tar.gz" -C "$D"
command -v cmake >/dev/null 2>&1 || { $V/bin/pip install -q cmake 2>&1 | grep -v "is ignored: it is neither" || true; export PATH="$V/bin:$PATH"; }
NV=$($V/bin/python -c "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13'))" 2>/dev/null || echo "")
PYINC=$($V/bin/python -c 'import sysconfig;print(sysconfig.get_paths()["include"])')
CUDA_ARGS=""
if command -v nvcc >/dev/null 2>&1; then
  real_nvcc=$(grep -o '[^ ]*/bin/nvcc' "$(command -v nvcc)" 2>/dev/null | head -1 || true)
  [ -n "$real_nvcc" ] || real_nvcc=$(command -v nvcc)
  CUDA_HOME=$(dirname "$(dirname "$real_nvcc")")
  CUDA_ARGS="-DCUDA_TOOLKIT_ROOT_DIR=$CUDA_HOME"
fi
[ -n "$NV" ] && [ -f "$NV/lib/libnvrtc.so.13" ] && CUDA_ARGS="$CUDA_ARGS -DCUDA_nvrtc_LIBRARY=$NV/lib/libnvrtc.so.13"
TORCH_CUDA_ARCH_LIST=9.0 FT_MAKE_ARGS=-j2 FT_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DFT_BUILD_TESTS=OFF \
  -DFT_WITH_CUDA=OFF -DCMAKE_CXX_STANDARD=20 -DFETCHCONTENT_SOURCE_DIR_PYBIND11=$D/pybind11-$PYB \
  -DPython_EXECUTABLE=$V/bin/python -DPYTHON_INCLUDE_DIRS=$PYINC $CUDA_ARGS" \
  $V/bin/pip install -q --no-cache-dir --no-build-isolation fast-rnnt==1.3 2>&1 | grep -v "is ignored: it is neither" || true
$V/bin/python -c "import fast_rnnt" || { echo "build_fast_rnnt.sh: fast_rnnt did not build" >&2; exit 1; }
echo "[setup] fast_rnnt built"
