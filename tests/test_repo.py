"""The README's two commands are the ones the repository runs."""

import re
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
