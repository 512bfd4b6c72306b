"""The torch device named by a config's `device` field, for training and decoding alike."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device, index: int | None = None) -> torch.device:
    """The torch device of a `device` setting.

    Args:
        device: "auto" (CUDA when available, else the CPU), or a name torch reads: "cpu", "cuda", "cuda:1"...
        index: the GPU to use when the result is a CUDA device (a process's local rank under torchrun); None
            keeps the name's own index (none: the current GPU).
    Raises:
        ValueError: a name torch does not know.
        RuntimeError: a CUDA device is asked for and CUDA is not available.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise ValueError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N...): {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} asked for, but CUDA is not available")
        if index is not None:
            dev = torch.device("cuda", index)
    return dev
