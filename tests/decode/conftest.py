"""Fixtures of the decoding tests: the fake models of decode_fakes.py."""

import pytest
from tests.decode.decode_fakes import ScriptTransducer, TinyTransducer


@pytest.fixture
def tiny_model() -> TinyTransducer:
    return TinyTransducer().eval()


@pytest.fixture
def script_model() -> ScriptTransducer:
    return ScriptTransducer().eval()
