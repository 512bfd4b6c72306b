import warnings

import pytest

from asr.train.resume import sampler_state_at
from tests.train.tiny import lhotse_loader_factory, make_cuts


def _ids(loader):
    return [tuple(batch.cut_ids) for batch in loader]


@pytest.mark.parametrize("world_size", [1, 2])
def test_resumed_sampler_continues_exactly(world_size):
    warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
    cuts = make_cuts(40)
    for rank in range(world_size):
        make = lhotse_loader_factory(cuts, rank, world_size, seed=3, max_duration=1.2)
        loader = make(None)
        loader.sampler.set_epoch(2)
        start = loader.sampler.state_dict()
        full = _ids(loader)
        assert len(full) >= 4
        k = len(full) // 2
        resumed = make(sampler_state_at(start, k))
        assert _ids(resumed) == full[k:]  # nothing repeated, nothing skipped
        if world_size == 1:  # the next epoch after a resumed one is a fresh and complete shuffle
            resumed.sampler.set_epoch(3)
            nxt = _ids(resumed)
            assert nxt != full and sorted(sum(nxt, ())) == sorted(sum(full, ()))
