import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"


@pytest.fixture
def python_exe() -> str:
    return str(PYTHON if PYTHON.exists() else Path(sys.executable))
