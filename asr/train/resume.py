"""What exact resume needs beyond the model and optimiser: random generator states and the sampler position.

The sampler position is "epoch E, k batches consumed". The DataLoader prefetches, so the sampler's own
state_dict() at checkpoint time is ahead of what training consumed. Instead we keep the sampler's state_dict from
the start of the epoch and set its batch count to k: lhotse's `load_state_dict` then replays the epoch's shuffling
and fast-forwards exactly k batches (metadata only, no audio is read).
"""

import copy
import random
from typing import Any

import numpy as np
import torch


def capture_rng() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def is_lhotse_state(state: dict | None) -> bool:
    return isinstance(state, dict) and "diagnostics" in state and "epoch" in state


def sampler_state_at(epoch_start_state: dict, batches_done: int) -> dict:
    """A lhotse sampler state_dict that resumes its epoch after `batches_done` batches.

    Args:
        epoch_start_state: the sampler's state_dict() taken after set_epoch(E), before iterating.
        batches_done: batches of epoch E consumed by training.
    """
    if not is_lhotse_state(epoch_start_state):
        raise ValueError("not a lhotse sampler state_dict (no 'diagnostics')")
    state = copy.deepcopy(epoch_start_state)
    diag = state["diagnostics"]
    epoch = diag["current_epoch"]
    stats = diag["stats_per_epoch"].setdefault(
        epoch, {"epoch": epoch, "kept_batches": 0, "discarded_batches": 0, "kept_cuts": 0, "discarded_cuts": 0}
    )
    stats["kept_batches"] = int(batches_done)
    stats["discarded_batches"] = 0
    return state
