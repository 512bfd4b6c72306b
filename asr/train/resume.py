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
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global generators, as tensors and plain
    containers (what checkpoints may hold: asr.checkpoint loads with weights_only=True).

    Python: `random.getstate()`, a tuple of ints. NumPy: its legacy MT19937 state as a dict, the 624-word key as an
    int64 tensor. torch: uint8 tensors.
    """
    algorithm, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "algorithm": str(algorithm),
            "key": torch.from_numpy(key.astype(np.int64)),  # (624,) uint32 words
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _numpy_state(state: dict | tuple) -> tuple:
    """np.random.set_state's tuple from capture_rng's dict, or the tuple as it is: checkpoints written before the
    weights-only rule (asr.checkpoint) hold np.random.get_state() itself, with a NumPy array."""
    if not isinstance(state, dict):
        return tuple(state)
    key = state["key"].numpy().astype(np.uint32)
    return state["algorithm"], key, state["pos"], state["has_gauss"], state["cached_gaussian"]


def restore_rng(state: dict[str, Any]) -> None:
    """Sets the global generators to a state of `capture_rng` (or of an older checkpoint, see _numpy_state)."""
    random.setstate(tuple(state["python"]))
    np.random.set_state(_numpy_state(state["numpy"]))
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
