"""Running average of the model over all batches (icefall's model_avg with average_period).

Every `average_period` batches, avg <- avg * (1 - p / n) + cur * (p / n) with n the batches done and p the period,
so avg is the mean of the models seen at each period boundary, from the start. It lives on rank 0 in float64.
"""

import copy

import torch
from torch import nn


def make_model_average(model: nn.Module) -> nn.Module:
    """A float64 CPU copy of `model` to accumulate the running average in."""
    avg = copy.deepcopy(model).to(device="cpu", dtype=torch.float64)
    for p in avg.parameters():
        p.requires_grad_(False)
    return avg


@torch.no_grad()
def update_model_average(model_avg: nn.Module, model: nn.Module, batch_idx_train: int, average_period: int) -> None:
    """Folds the current `model` into `model_avg` (call when batch_idx_train % average_period == 0)."""
    if batch_idx_train <= 0 or average_period <= 0:
        raise ValueError(f"bad counters: batch_idx_train={batch_idx_train}, average_period={average_period}")
    weight_cur = average_period / batch_idx_train
    weight_avg = 1.0 - weight_cur
    cur = model.state_dict()
    for name, avg in model_avg.state_dict().items():
        if avg.is_floating_point():
            avg.mul_(weight_avg).add_(cur[name].detach().to(device="cpu", dtype=torch.float64), alpha=weight_cur)
        else:
            avg.copy_(cur[name])
