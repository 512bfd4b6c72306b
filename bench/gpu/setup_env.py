"""Installs, from the wheels carried with the working tree, the distributions of bench/gpu/wheels.txt that this
Python lacks, into a target folder (never over what the machine has: its torch stays), and reports our runtime
dependencies (pyproject.toml) as this Python sees them. Standard library only: it runs before anything is installed.

    python bench/gpu/setup_env.py --wheels bench/gpu/wheels --list bench/gpu/wheels.txt --target DIR --report F

Our package itself is not installed: run.sh puts the source tree on PYTHONPATH (pyproject pins torch==2.14.1 and
Python < 3.12, which the GPU machine's Python 3.12 with its own torch would refuse).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def normalise(name: str) -> str:
    """PEP 503 name, with '_' as wheel file names spell it."""
    return re.sub(r"[-_.]+", "_", name).lower()


def read_pins(path: Path) -> list[tuple[str, str]]:
    """(name, version) of each 'name==version' line; '#' starts a comment."""
    pins = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        if not m:
            raise SystemExit(f"{path}:{lineno}: expected 'name==version', got {line!r}")
        pins.append((m.group(1), m.group(2)))
    return pins


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def runtime_dependencies(pyproject: Path) -> list[dict]:
    """Each [project] dependency of pyproject.toml with the version this Python has (None: missing)."""
    import tomllib

    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = []
    for spec in deps:
        name = re.match(r"[A-Za-z0-9._-]+", spec).group(0)
        have = installed_version(name)
        pinned = re.fullmatch(r"[A-Za-z0-9._-]+==(\S+)", spec.replace(" ", ""))
        if have is None:
            state = "missing"
        elif pinned and pinned.group(1) != have:
            state = "other version"
        else:
            state = "ok"
        out.append({"name": name, "spec": spec, "installed": have, "state": state})
    return out


def find_wheel(wheels: Path, name: str, version: str) -> Path | None:
    hits = sorted(wheels.glob(f"{normalise(name)}-{version}-*.whl"))
    return hits[0] if hits else None


def extract(wheel: Path, target: Path) -> None:
    """What pip --target does for the wheels here: unzip, moving *.data/{purelib,platlib} to the top."""
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            parts = member.split("/")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers, data: not needed to import
                dest = target.joinpath(*parts[2:])
            else:
                dest = target.joinpath(*parts)
            if member.endswith("/"):
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(z.read(member))


def install(wheel_files: list[Path], target: Path) -> str:
    """pip install --no-deps --no-index --target, or plain extraction where this Python has no pip."""
    target.mkdir(parents=True, exist_ok=True)
    if not wheel_files:
        return "nothing to install"
    if installed_version("pip") is not None:
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--upgrade", "--quiet",
               "--disable-pip-version-check", "--target", str(target), *map(str, wheel_files)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            return "pip"
        print(f"pip failed ({proc.stderr[-500:]}); extracting the wheels instead", file=sys.stderr)
    for wheel in wheel_files:
        extract(wheel, target)
    return "extracted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, default=REPO / "bench" / "gpu" / "wheels")
    parser.add_argument("--list", type=Path, default=REPO / "bench" / "gpu" / "wheels.txt")
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()

    sys.path.insert(0, str(args.target))  # what an earlier run installed counts as present
    pins = read_pins(args.list)
    present, to_install, no_wheel = [], [], []
    for name, version in pins:
        have = installed_version(name)
        if have is not None:
            present.append({"name": name, "installed": have, "wheel": version})
            continue
        wheel = find_wheel(args.wheels, name, version)
        (to_install if wheel else no_wheel).append((name, version, wheel))
    method = install([w for _, _, w in to_install], args.target)
    importlib.invalidate_caches()  # so that the distributions installed just now are seen
    report = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "target": str(args.target),
        "install_method": method,
        "installed_from_wheels": [f"{n}=={v}" for n, v, _ in to_install],
        "already_present": present,
        "missing_no_wheel": [f"{n}=={v}" for n, v, _ in no_wheel],
        "runtime_dependencies": runtime_dependencies(REPO / "pyproject.toml"),
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1))
    missing = [d["name"] for d in report["runtime_dependencies"] if d["state"] == "missing"]
    print(f"setup: Python {report['python']}; installed {len(to_install)} wheel(s) into {args.target} "
          f"({method}); {len(no_wheel)} listed without a wheel here; runtime deps still missing: "
          f"{', '.join(missing) or 'none'}")


if __name__ == "__main__":
    main()
