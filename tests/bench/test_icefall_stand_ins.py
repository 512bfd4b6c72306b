"""bench/bench_icefall_step.py's stand-ins for k2 and icefall.utils do what icefall's model asks of them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import bench_icefall_step  # noqa: E402


@pytest.fixture
def stand_ins(monkeypatch):
    pytest.importorskip("fast_rnnt", reason="fast_rnnt (k2's loss code) is built by scripts/setup.sh --test")
    for name in ("k2", "icefall", "icefall.utils"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    bench_icefall_step._stand_in_k2()
    bench_icefall_step._stand_in_icefall_utils()
    yield sys.modules["k2"], sys.modules["icefall.utils"]
    for name in ("k2", "icefall", "icefall.utils"):
        sys.modules.pop(name, None)


def test_make_pad_mask_as_icefall_documents_it(stand_ins):
    _, utils = stand_ins
    mask = utils.make_pad_mask(torch.tensor([1, 3, 2, 5]))
    expected = torch.tensor([[False, True, True, True, True], [False, False, False, True, True],
                             [False, False, True, True, True], [False, False, False, False, False]])
    assert torch.equal(mask, expected)
    assert utils.make_pad_mask(torch.tensor([1, 2]), max_len=4).shape == (2, 4)


def test_ragged_tensor_and_add_sos(stand_ins):
    k2, utils = stand_ins
    y = k2.RaggedTensor([[1, 3], [5]])
    assert y.num_axes == 2 and y.dim0 == 2
    assert y.shape.row_splits(1).tolist() == [0, 2, 3]
    assert utils.add_sos(y, sos_id=0).tolist() == [[0, 1, 3], [0, 5]]  # icefall's docstring example
    assert y.pad(mode="constant", padding_value=-1).tolist() == [[1, 3], [5, -1]]


def test_losses_are_fast_rnnt_s(stand_ins):
    import fast_rnnt

    k2, _ = stand_ins
    assert k2.rnnt_loss_pruned is fast_rnnt.rnnt_loss_pruned
    assert k2.get_rnnt_prune_ranges is fast_rnnt.get_rnnt_prune_ranges
