"""The repository is self-contained: the README's two commands are the ones it runs, and no file points outside it."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
    return [b.strip() for b in blocks]


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    assert len(commands) >= 2, "README must open with the set-up/demo command and the test command"
    ci = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines()]
    assert commands[1] in ci, f"README's test command {commands[1]!r} is not what .ci/run runs"


def test_readme_first_command_runs_the_demo():
    first = _readme_commands()[0]
    assert "scripts/setup.sh" in first and "recipes/librispeech/run.sh" in first
    for script in re.findall(r"bash (\S+\.sh)", first):
        assert (ROOT / script).is_file(), f"README's first command names a missing script {script}"


def _tracked_files() -> list[Path]:
    """The files git tracks (a clean clone's files); without git, every file outside .git and .venv."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_file_points_outside_the_repository():
    # Built from parts so that this file does not name them itself.
    outside = [("shared" + "/" + what).encode() for what in ("notes", "hooks")]
    files = _tracked_files()
    assert files, "found no files in the repository"
    offenders = []
    for path in files:
        if not path.is_file():  # deleted in the work tree, not yet in the index
            continue
        text = path.read_bytes()
        offenders += [f"{path.relative_to(ROOT)}: {p.decode()}" for p in outside if p in text]
    assert not offenders, (
        "files refer to folders users do not have (put the facts in docs/ instead):\n" + "\n".join(offenders)
    )


def test_the_committed_loss_picture_is_only_replaced_by_hand():
    """RESULTS.md's pictures exist; no recipe or script writes them (run.sh writes exp/<name>/loss.png)."""
    recipe = ROOT / "recipes/librispeech"
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (recipe / "RESULTS.md").read_text())
    assert pictures, "RESULTS.md shows no loss curve"
    for name in pictures:
        assert (recipe / name).is_file(), f"RESULTS.md shows {name}, which is not in {recipe}"
        writers = [p for p in [*recipe.glob("*.sh"), *recipe.glob("*.py"), *(ROOT / "scripts").iterdir()]
                   if p.is_file() and Path(name).name in p.read_text(errors="replace")]
        assert not writers, f"{writers} name {name}: only a change of the run of record replaces it"
