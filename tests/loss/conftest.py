"""Shared helpers of the loss tests: random inputs, boundaries, the fast_rnnt oracle and brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

TOL = {torch.float64: dict(rtol=1e-6, atol=1e-8), torch.float32: dict(rtol=1e-4, atol=1e-4)}


@pytest.fixture
def fast_rnnt():
    """The oracle; tests that use it are skipped when it is not built (or its build does not load)."""
    try:
        import fast_rnnt as module
    except ImportError as e:  # ModuleNotFoundError, or a broken build (undefined symbols)
        pytest.skip(f"fast_rnnt (the loss oracle) is not usable: {e}")
    return module


def random_boundary(gen: torch.Generator, B: int, U: int, T: int, min_u: int = 1, modified: bool = False):
    """(B, 4) rows [0, 0, U_b, T_b] with one full-length row; T_b >= U_b when modified."""
    Ub = torch.randint(min_u, U + 1, (B,), generator=gen)
    Tb = torch.randint(1, T + 1, (B,), generator=gen)
    Ub[0], Tb[0] = U, T
    if modified:
        Tb = torch.maximum(Tb, Ub)
    return torch.stack([torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long), Ub, Tb], dim=1)


def assert_close(a, b, dtype):
    torch.testing.assert_close(a.to(dtype), b.to(dtype), **TOL[dtype])


def brute_force_loss(
    logits: torch.Tensor, symbols: list[int], blank: int, modified: bool = False, normalised: bool = False
) -> float:
    """-log of the summed probability of every alignment, enumerated one by one.

    Args:
        logits: (T, U + 1, V) joiner output of one sequence.
        symbols: its U labels.
        normalised: logits are already log-probs (arcs of -inf allowed): no log_softmax.
    """
    logp = logits.double() if normalised else logits.double().log_softmax(-1)
    T, U1, _ = logp.shape
    U = U1 - 1
    scores = []  # -inf terms are fine: exp(-inf - m) = 0
    if modified:  # one symbol per frame: choose the U frames that emit a label
        for frames in itertools.combinations(range(T), U):
            u, s = 0, 0.0
            for t in range(T):
                if t in frames:
                    s += logp[t, u, symbols[u]].item()
                    u += 1
                else:
                    s += logp[t, u, blank].item()
            scores.append(s)
    else:  # T blanks and U labels in any order, the last move a blank
        for labels_at in itertools.combinations(range(T + U - 1), U):
            t, u, s = 0, 0, 0.0
            for move in range(T + U):
                if move in labels_at:
                    s += logp[t, u, symbols[u]].item()
                    u += 1
                else:
                    s += logp[t, u, blank].item()
                    t += 1
            scores.append(s)
    m = max(scores, default=-math.inf)
    if m == -math.inf:
        return math.inf
    return -(m + math.log(sum(math.exp(x - m) for x in scores)))
