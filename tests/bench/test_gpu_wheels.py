"""The wheel list of the GPU check (bench/gpu/wheels.txt) downloads from the registry alone within its size budget,
installs into a clean Python 3.12 target folder (pip --target, as bench/gpu/setup_env.py does, and by plain
extraction where pip is missing), and what it holds imports there, with our package from the source tree.

torch is not in the list (the GPU machine has its own), so under Python 3.12 here the imports stop short of the
modules that need torch: the package `asr` itself imports, every module of asr/ and bench/gpu/ compiles, and the
carried distributions import. The rest of the import is checked on the GPU machine by run.sh (its pytest step).
Without a Python 3.12 interpreter the test checks pip's resolution for 3.12 only (--python-version 3.12
--only-binary=:all: --no-deps --target) and says so. Needs the registry: skipped when it is unreachable.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.gpu import setup_env  # noqa: E402

pytestmark = [pytest.mark.network, pytest.mark.slow]
# import name of each carried distribution that does not need torch
IMPORTS = ["pytest", "pygments", "pluggy", "iniconfig", "packaging", "pytest_timeout", "yaml", "numpy", "tqdm",
           "typing_extensions", "urllib3", "kaldialign", "hydra", "omegaconf", "antlr4", "audioread", "click",
           "cytoolz", "toolz", "intervaltree", "sortedcontainers", "tabulate", "lilcom", "soundfile", "cffi", "pycparser"]  # fmt: skip


def registry_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def python312() -> str | None:
    """A CPython 3.12 interpreter on this machine (PATH, then pyenv's versions), or None."""
    candidates = [shutil.which("python3.12")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p / "bin" / "python3.12") for p in pyenv.glob("3.12*")) if pyenv.is_dir() else []
    for c in candidates:
        if c and subprocess.run([c, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                                capture_output=True).returncode == 0:  # fmt: skip
            return c
    return None


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    if not registry_reachable():
        pytest.skip("the package registry (pypi.org) is unreachable")
    dest = tmp_path_factory.mktemp("wheels")
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu" / "fetch_wheels.sh"), str(dest)],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest


def test_every_pin_has_one_wheel_within_budget(wheels):
    pins = setup_env.read_pins(REPO / "bench" / "gpu" / "wheels.txt")
    for name, version in pins:
        assert setup_env.find_wheel(wheels, name, version), f"{name}=={version}"
    files = list(wheels.glob("*.whl"))
    assert len(files) == len(pins)
    assert sum(f.stat().st_size for f in files) < 50 * 2**20
    for f in files:  # CPython 3.12 or pure Python, Linux x86_64 or any platform
        tags = f.name[:-4].split("-")[-3:]
        assert tags[0] in ("cp312", "py3", "py2.py3") and (tags[2] == "any" or "x86_64" in tags[2]), f.name


def check_imports(py: str, site: Path) -> None:
    code = (f"import sys; sys.path[:0] = [{str(site)!r}, {str(REPO)!r}]\n"
            f"for name in {IMPORTS!r}: __import__(name)\n"
            "import asr, importlib.metadata as m; assert asr.__version__\n"
            "assert m.version('lhotse') == '1.33.0'\n"
            "print('imports ok')")  # fmt: skip
    proc = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0 and "imports ok" in proc.stdout, proc.stderr


def test_installs_into_clean_python312_target(wheels, tmp_path):
    py = python312()
    if py is None:
        # resolution only: pip picks a 3.12 wheel for every pin without installing anything here
        target = tmp_path / "target"
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                               "--only-binary=:all:", "--python-version", "3.12", "--target", str(target),
                               "--find-links", str(wheels), "-r", str(REPO / "bench" / "gpu" / "wheels.txt")],
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        pytest.skip("no Python 3.12 interpreter here: pip's 3.12 resolution checked, the import part needs one")
    # a bare 3.12 has none of the pins: setup_env.py installs them all (with pip), then they import
    site = tmp_path / "site"
    proc = subprocess.run([py, "-I", str(REPO / "bench" / "gpu" / "setup_env.py"), "--wheels", str(wheels),
                           "--target", str(site), "--report", str(tmp_path / "setup.json")],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = __import__("json").loads((tmp_path / "setup.json").read_text())
    assert report["python"].startswith("3.12") and report["install_method"] == "pip"
    assert not report["missing_no_wheel"]
    torch = next(d for d in report["runtime_dependencies"] if d["name"] == "torch")
    assert torch["state"] == "missing"  # it is not carried: the GPU machine has its own
    check_imports(py, site)
    # every module of ours compiles under 3.12
    proc = subprocess.run([py, "-m", "compileall", "-q", "-x", "__pycache__", str(REPO / "asr"),
                           str(REPO / "bench" / "gpu")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path)})  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_extraction_fallback_imports_too(wheels, tmp_path):
    """Where the GPU machine's Python has no pip, setup_env.py unzips the wheels; they import the same."""
    py = python312()
    if py is None:
        pytest.skip("no Python 3.12 interpreter here")
    site = tmp_path / "site"
    for wheel in sorted(wheels.glob("*.whl")):
        setup_env.extract(wheel, site)
    check_imports(py, site)
