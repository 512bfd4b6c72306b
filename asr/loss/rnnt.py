"""RNN-T losses on the full lattice: the simple loss (joiner = addition), its smoothed variant, and the loss on the
output of a real joiner (B, T, U + 1, V). k2's names, arguments and semantics.

The simple and smoothed losses never build a (B, T, U + 1, V) tensor: their normalisers come from one batched
matmul of the max-shifted exp(lm) and exp(am), as in the pruned RNN-T paper (arXiv 2206.13236).
"""

from __future__ import annotations

import torch
from torch import Tensor

from asr.loss.mutual_information import compute_dtype, mutual_information_recursion

RNNT_TYPES = ("regular", "modified", "constrained")
REDUCTIONS = ("none", "mean", "sum")


def check_rnnt_type(rnnt_type: str) -> None:
    if rnnt_type not in RNNT_TYPES:
        raise ValueError(f"rnnt_type must be one of {RNNT_TYPES}, got {rnnt_type!r}")


def check_lengths(U: int, T: int, rnnt_type: str, boundary: Tensor | None) -> None:
    """The modified and constrained transducers emit at most one label per frame: they need T >= U."""
    if rnnt_type == "regular":
        return
    if boundary is None:
        if T < U:
            raise ValueError(f"rnnt_type={rnnt_type!r} requires T >= U, got T={T}, U={U}")
    elif bool((boundary[:, 3] < boundary[:, 2]).any()):
        raise ValueError(
            f"rnnt_type={rnnt_type!r} requires T >= U for every sequence, got boundary {boundary.tolist()}"
        )


def check_symbols(
    symbols: Tensor, B: int, U: int, V: int, termination_symbol: int, boundary: Tensor | None
) -> Tensor:
    """Validates (B, U) labels; padding past each item's U_b may hold anything and is replaced by the blank."""
    if symbols.shape != (B, U) or symbols.dtype != torch.int64:
        raise ValueError(f"symbols must be int64 of shape ({B}, {U}), got {symbols.dtype} {tuple(symbols.shape)}")
    if not 0 <= termination_symbol < V:
        raise ValueError(f"termination_symbol must be in [0, {V}), got {termination_symbol}")
    if symbols.numel() == 0:
        return symbols
    bad = (symbols < 0) | (symbols >= V)
    if boundary is not None:
        padding = torch.arange(U, device=symbols.device).view(1, U) >= boundary[:, 2:3].to(symbols.device)
        if bool(bad.any()):
            symbols = symbols.masked_fill(padding, termination_symbol)
        bad = bad & ~padding
    if bool(bad.any()):
        raise ValueError(f"symbols must be in [0, {V}) (up to each sequence's length)")
    return symbols


def reduce_loss(negated: Tensor, reduction: str) -> Tensor:
    """loss = -negated, reduced over the batch."""
    if reduction == "none":
        return -negated
    if reduction == "mean":
        return -negated.mean()
    if reduction == "sum":
        return -negated.sum()
    raise ValueError(f"reduction should be one of {REDUCTIONS}, got {reduction!r}")


def fix_for_boundary(px: Tensor, boundary: Tensor | None) -> Tensor:
    """Regular RNN-T emits no label on the one-past-the-last frame: px[b, :, t_end_b] = -inf (in place).

    Args:
        px: (B, U, T + 1).
        boundary: (B, 4) or None (then px[:, :, T] is already -inf).
    """
    if boundary is None:
        return px
    B, U, T1 = px.shape
    return px.scatter_(2, boundary[:, 3].to(px.device).view(B, 1, 1).expand(B, U, 1), float("-inf"))


def add_delay_penalty(px: Tensor, boundary: Tensor | None, rnnt_type: str, delay_penalty: float) -> Tensor:
    """k2's delay penalty: rewards label arcs on early frames, (T_b - 1) / 2 - t times delay_penalty.

    Args:
        px: (B, U, T + 1) or (B, U, T).
    """
    if delay_penalty == 0.0:
        return px
    B, U, T0 = px.shape
    T = T0 - 1 if rnnt_type == "regular" else T0
    if boundary is None:
        offset = torch.full((B,), (T - 1) / 2, dtype=px.dtype, device=px.device)
    else:
        offset = (boundary[:, 3].to(px.device) - 1).to(px.dtype) / 2
    penalty = offset.view(B, 1, 1) - torch.arange(T0, device=px.device, dtype=px.dtype).view(1, 1, T0)
    return px + penalty * delay_penalty


def _label_and_blank_terms(lm: Tensor, am: Tensor, symbols: Tensor, termination_symbol: int, rnnt_type: str):
    """Un-normalised label and blank scores and the max-shifted probabilities used by the normalisers."""
    B, T, V = am.shape
    U = lm.shape[1] - 1
    am_max = am.amax(dim=2, keepdim=True)  # (B, T, 1)
    lm_max = lm.amax(dim=2, keepdim=True)  # (B, U + 1, 1)
    am_probs = (am - am_max).exp()  # (B, T, V)
    lm_probs = (lm - lm_max).exp()  # (B, U + 1, V)
    px_am = torch.gather(am.transpose(1, 2), 1, symbols.unsqueeze(2).expand(B, U, T))  # (B, U, T)
    if rnnt_type == "regular":
        px_am = torch.cat((px_am, px_am.new_full((B, U, 1), float("-inf"))), dim=2)  # (B, U, T + 1)
    px_lm = torch.gather(lm[:, :U], 2, symbols.unsqueeze(2))  # (B, U, 1)
    py_am = am[:, :, termination_symbol].unsqueeze(1)  # (B, 1, T)
    py_lm = lm[:, :, termination_symbol].unsqueeze(2)  # (B, U + 1, 1)
    return am_max, lm_max, am_probs, lm_probs, px_am, px_lm, py_am, py_lm


def _check_simple_inputs(
    lm: Tensor, am: Tensor, symbols: Tensor, termination_symbol: int, rnnt_type: str, boundary
) -> Tensor:
    if lm.ndim != 3 or am.ndim != 3 or lm.shape[0] != am.shape[0] or lm.shape[2] != am.shape[2]:
        raise ValueError(f"lm (B, U + 1, V) and am (B, T, V) disagree: {tuple(lm.shape)}, {tuple(am.shape)}")
    B, T, V = am.shape
    U = lm.shape[1] - 1
    check_rnnt_type(rnnt_type)
    check_lengths(U, T, rnnt_type, boundary)
    return check_symbols(symbols, B, U, V, termination_symbol, boundary)


def finish_logprobs(px: Tensor, py: Tensor, boundary: Tensor | None, rnnt_type: str) -> tuple[Tensor, Tensor]:
    """px (B, U, T + 1 or T), py (B, U + 1, T) made ready for the recursion: the regular type's -inf past each
    boundary; the constrained type's blank cost added to every label arc."""
    if rnnt_type == "regular":
        px = fix_for_boundary(px, boundary)
    elif rnnt_type == "constrained":
        px = px + py[:, 1:, :]
    return px, py


def get_rnnt_logprobs(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
) -> tuple[Tensor, Tensor]:
    """px, py of the simple RNN-T (joiner = addition of lm and am), ready for mutual_information_recursion.

    Args:
        lm: (B, U + 1, V) prediction-network part of the logits.
        am: (B, T, V) encoder part of the logits.
        symbols: (B, U) int64 labels.
        termination_symbol: the blank id.
        boundary: (B, 4) int64 rows [0, 0, U_b, T_b], or None.
        rnnt_type: "regular", "modified" or "constrained".
    Returns:
        px (B, U, T + 1) (regular) or (B, U, T) log-probs of label arcs; py (B, U + 1, T) log-probs of blank arcs.
    """
    symbols = _check_simple_inputs(lm, am, symbols, termination_symbol, rnnt_type, boundary)
    T = am.shape[1]
    am_max, lm_max, am_probs, lm_probs, px_am, px_lm, py_am, py_lm = _label_and_blank_terms(
        lm, am, symbols, termination_symbol, rnnt_type
    )
    tiny = torch.finfo(am_probs.dtype).tiny
    normalizers = (torch.matmul(lm_probs, am_probs.transpose(1, 2)) + tiny).log()  # (B, U + 1, T)
    normalizers = normalizers + lm_max + am_max.transpose(1, 2)
    px = px_am + px_lm  # (B, U, T + 1)
    px[:, :, :T] -= normalizers[:, :-1, :]
    py = py_am + py_lm - normalizers  # (B, U + 1, T)
    return finish_logprobs(px, py, boundary, rnnt_type)


def get_rnnt_logprobs_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
) -> tuple[Tensor, Tensor]:
    """px, py of the simple RNN-T interpolated with an lm-only and an am-only (unigram-lm) model, in log space.

    Args: as get_rnnt_logprobs, plus
        lm_only_scale: weight of the lm-only log-probs.
        am_only_scale: weight of the am-only log-probs (lm replaced by the batch-averaged unigram).
    Returns:
        px (B, U, T + 1) or (B, U, T); py (B, U + 1, T).
    """
    symbols = _check_simple_inputs(lm, am, symbols, termination_symbol, rnnt_type, boundary)
    B, T, V = am.shape
    U = lm.shape[1] - 1
    am_max, lm_max, am_probs, lm_probs, px_am, px_lm, py_am, py_lm = _label_and_blank_terms(
        lm, am, symbols, termination_symbol, rnnt_type
    )
    tiny = torch.finfo(lm_probs.dtype).tiny
    normalizers = (torch.matmul(lm_probs, am_probs.transpose(1, 2)) + tiny).log()  # (B, U + 1, T)
    lm_sums = lm_probs.sum(dim=2, keepdim=True)  # (B, U + 1, 1)
    unigram = (lm_probs / lm_sums).mean(dim=(0, 1), keepdim=True) + tiny  # (1, 1, V)
    amonly_norm = (torch.mv(am_probs.reshape(-1, V), unigram.reshape(V)).reshape(B, T, 1).log() + am_max)
    amonly_norm = amonly_norm.transpose(1, 2)  # (B, 1, T)
    unigram = unigram.log()
    lmonly_norm = lm_sums.log() + lm_max  # (B, U + 1, 1)
    normalizers = normalizers + lm_max + am_max.transpose(1, 2)  # (B, U + 1, T)
    px_unigram = torch.gather(unigram.expand(B, U, V), 2, symbols.unsqueeze(2))  # (B, U, 1)
    px = px_am + px_lm  # (B, U, T + 1)
    px[:, :, :T] -= normalizers[:, :U, :]
    px_amonly = px_am + px_unigram  # (B, U, T + 1)
    px_amonly[:, :, :T] -= amonly_norm
    px_lmonly = px_lm - lmonly_norm[:, :U, :]  # (B, U, 1)
    py = py_am + py_lm - normalizers  # (B, U + 1, T)
    py_amonly = py_am + unigram[0, 0, termination_symbol] - amonly_norm  # (B, 1, T)
    py_lmonly = py_lm - lmonly_norm  # (B, U + 1, 1)
    combined_scale = 1.0 - lm_only_scale - am_only_scale
    # a zero scale times a -inf log-prob would be NaN; k2 uses a negligible scale instead
    lm_only_scale = lm_only_scale if lm_only_scale != 0.0 else 1.0e-20
    am_only_scale = am_only_scale if am_only_scale != 0.0 else 1.0e-20
    px = px * combined_scale + px_lmonly * lm_only_scale + px_amonly * am_only_scale
    py = py * combined_scale + py_lmonly * lm_only_scale + py_amonly * am_only_scale
    return finish_logprobs(px, py, boundary, rnnt_type)


def get_rnnt_logprobs_joint(
    logits: Tensor, symbols: Tensor, termination_symbol: int, boundary: Tensor | None = None, rnnt_type: str = "regular"
) -> tuple[Tensor, Tensor]:
    """px, py from the joiner's output on the full lattice.

    Args:
        logits: (B, T, U + 1, V).
        symbols: (B, U) int64.
    Returns:
        px (B, U, T + 1) or (B, U, T); py (B, U + 1, T).
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, T, U + 1, V), got {tuple(logits.shape)}")
    B, T, U1, V = logits.shape
    U = U1 - 1
    check_rnnt_type(rnnt_type)
    check_lengths(U, T, rnnt_type, boundary)
    symbols = check_symbols(symbols, B, U, V, termination_symbol, boundary)
    with_blank = torch.cat((symbols, symbols.new_full((B, 1), termination_symbol)), dim=1)  # (B, U + 1)
    px, py = NodeLogProbs.apply(logits, with_blank.unsqueeze(1).expand(B, T, U1), termination_symbol)
    px = px[:, :, :U].transpose(1, 2)  # (B, U, T)
    if rnnt_type == "regular":
        px = torch.cat((px, px.new_full((B, U, 1), float("-inf"))), dim=2)  # (B, U, T + 1)
    py = py.transpose(1, 2)  # (B, U + 1, T)
    return finish_logprobs(px, py, boundary, rnnt_type)


class NodeLogProbs(torch.autograd.Function):
    """Log-probs of the label and blank arcs leaving each lattice node, normalised over V, with a fused backward.

    forward(logits (B, T, N, V), node_symbols (B, T, N) int64, termination_symbol) -> px, py, each (B, T, N).

    Autograd through logsumexp + gather + select would allocate several (B, T, N, V) gradients and sum them;
    here the gradient is one softmax scaled in place, plus two scatters of (B, T, N) values.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, node_symbols: Tensor, termination_symbol: int):
        # log_softmax is one fused pass, about twice as fast as logsumexp on CPU; it is dropped right away
        log_probs = torch.log_softmax(logits, dim=3)  # (B, T, N, V)
        px = torch.gather(log_probs, 3, node_symbols.unsqueeze(3)).squeeze(3)  # (B, T, N)
        py = log_probs[:, :, :, termination_symbol].clone()  # (B, T, N)
        ctx.save_for_backward(logits, node_symbols)
        ctx.termination_symbol = termination_symbol
        return px, py

    @staticmethod
    def backward(ctx, px_grad: Tensor, py_grad: Tensor):
        logits, node_symbols = ctx.saved_tensors
        grad = torch.softmax(logits, dim=3)  # (B, T, N, V)
        grad.mul_((px_grad + py_grad).neg_().unsqueeze(3))
        grad.scatter_add_(3, node_symbols.unsqueeze(3), px_grad.unsqueeze(3))
        grad[:, :, :, ctx.termination_symbol] += py_grad
        return grad, None, None


def recursion_loss(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad):
    """The loss of node log-probs px (B, U, T + 1) / py (B, U + 1, T): k2's delay penalty added to px, then the
    mutual-information recursion, reduced; with return_grad also the occupations (px_grad, py_grad). Shared by the
    simple, smoothed, full and pruned losses."""
    px = add_delay_penalty(px, boundary, rnnt_type, delay_penalty)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction should be one of {REDUCTIONS}, got {reduction!r}")
    out = mutual_information_recursion(px, py, boundary=boundary, return_grad=return_grad)
    if return_grad:
        scores, grads = out
        return reduce_loss(scores, reduction), grads
    return reduce_loss(out, reduction)


def _work(*xs: Tensor) -> list[Tensor]:
    """Half-precision inputs are computed in float32."""
    return [x.to(compute_dtype(x.dtype)) for x in xs]


def rnnt_loss_simple(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """The simple RNN-T loss: joiner = lm + am, normalised over V on every lattice node.

    Args:
        lm: (B, U + 1, V); am: (B, T, V); symbols: (B, U) int64; termination_symbol: blank id;
        boundary: (B, 4) int64 rows [0, 0, U_b, T_b] or None; rnnt_type: "regular" | "modified" | "constrained";
        delay_penalty: k2's delay penalty (0 disables); reduction: "none" | "mean" | "sum";
        return_grad: also return (px_grad (B, U, T + 1), py_grad (B, U + 1, T)), the occupation probabilities
        used by get_rnnt_prune_ranges.
    Returns:
        loss: (B,) with reduction="none", else a scalar; with return_grad, (loss, (px_grad, py_grad)).
    """
    lm, am = _work(lm, am)
    px, py = get_rnnt_logprobs(lm, am, symbols, termination_symbol, boundary=boundary, rnnt_type=rnnt_type)
    return recursion_loss(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def rnnt_loss_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """The simple RNN-T loss smoothed with lm-only and am-only log-probs (see get_rnnt_logprobs_smoothed).

    Args and returns as rnnt_loss_simple, plus lm_only_scale and am_only_scale.
    """
    lm, am = _work(lm, am)
    px, py = get_rnnt_logprobs_smoothed(
        lm, am, symbols, termination_symbol, lm_only_scale, am_only_scale, boundary=boundary, rnnt_type=rnnt_type
    )
    return recursion_loss(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def rnnt_loss(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """The RNN-T loss on the joiner's output over the full lattice.

    Args:
        logits: (B, T, U + 1, V); other arguments as rnnt_loss_simple.
    Returns:
        loss: (B,) with reduction="none", else a scalar; with return_grad, (loss, (px_grad, py_grad)).
    """
    (logits,) = _work(logits)
    px, py = get_rnnt_logprobs_joint(logits, symbols, termination_symbol, boundary=boundary, rnnt_type=rnnt_type)
    return recursion_loss(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)
