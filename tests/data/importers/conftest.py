"""Fixtures of the importer tests (helpers in importer_fixtures.py)."""

from __future__ import annotations

import pytest

from asr.data.importers import ImportConfig, SplitConfig


@pytest.fixture
def cfg() -> ImportConfig:
    """Limits 0.5 - 4 s; no held-out sets unless a test asks (so that kept counts are exact per set)."""
    return ImportConfig(min_duration=0.5, max_duration=4.0, jobs=2,
                        split=SplitConfig(dev_fraction=0.0, test_fraction=0.0))
