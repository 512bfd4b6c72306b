import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # tests/train/tiny.py, the shared tiny set-up

PYTHON = REPO / ".venv" / "bin" / "python"


@pytest.fixture
def python_exe() -> str:
    return str(PYTHON if PYTHON.exists() else Path(sys.executable))
