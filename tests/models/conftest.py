"""Fixtures of the model tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def seeded():
    """Each test starts from the same random state, so a failure reproduces."""
    torch.manual_seed(0)
    yield
