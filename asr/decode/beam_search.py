"""Beam search of one utterance in the form of Graves (2012), Algorithm 1, as icefall's `beam_search`.

Several symbols may be emitted on one frame. On each frame, the most probable hypothesis of the set A still to
expand is taken out; it either ends the frame with blank (into B) or grows by one of the `beam` + 1 most probable
non-blank symbols (back into A). The frame ends once B holds `beam` hypotheses more probable than the best of A.
Hypotheses with the same labels are merged by adding their probabilities. Decoder outputs are cached per label
context and joiner outputs per hypothesis and frame, so no network work is repeated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from asr.decode.search_common import decoder_out_for


def _add(hyps: dict[tuple[int, ...], float], ys: tuple[int, ...], log_prob: float) -> None:
    """Adds a hypothesis to a set, merging it with an equal one by log-adding the probabilities."""
    old = hyps.get(ys)
    if old is None:
        hyps[ys] = log_prob
    else:
        hi, lo = max(old, log_prob), min(old, log_prob)
        hyps[ys] = hi if lo == -math.inf else hi + math.log1p(math.exp(lo - hi))


@torch.inference_mode()
def beam_search(
    model: nn.Module,
    encoder_out: Tensor,
    beam: int = 4,
    length_norm: bool = True,
    max_expansions_per_frame: int = 1000,
) -> list[int]:
    """Beam search of one utterance.

    Args:
        model: a transducer (`.decoder`, `.joiner`, `.blank_id`, `.context_size`).
        encoder_out: (1, T, D) encoder output of one utterance.
        beam: hypotheses kept after each frame.
        length_norm: pick the final hypothesis by log-probability divided by its length (icefall does).
        max_expansions_per_frame: a guard against a model that never prefers blank (which would keep a frame
            expanding for ever); 1000 is far above the handful of expansions a trained model needs.
    Returns:
        The token ids of the best hypothesis.
    """
    if encoder_out.ndim != 3 or encoder_out.size(0) != 1:
        raise ValueError(f"beam_search takes one utterance, encoder_out (1, T, D); got {tuple(encoder_out.shape)}")
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    blank, context_size = model.blank_id, model.context_size
    device = encoder_out.device
    enc = model.joiner.encoder_proj(encoder_out[0])  # (T, J)

    start = (blank,) * context_size
    dec_cache: dict[tuple[int, ...], Tensor] = {}

    def dec_of(ys: tuple[int, ...]) -> Tensor:
        ctx = ys[-context_size:]
        if ctx not in dec_cache:
            dec_cache[ctx] = decoder_out_for(model, torch.tensor([ctx], dtype=torch.int64, device=device))  # (1, J)
        return dec_cache[ctx]

    kept: dict[tuple[int, ...], float] = {start: 0.0}  # B of the previous frame; ys include the start context
    for t in range(enc.size(0)):
        todo = kept  # A
        kept = {}  # B
        joint_cache: dict[tuple[int, ...], tuple[float, list[float], list[int]]] = {}
        for _ in range(max_expansions_per_frame):
            ys = max(todo, key=todo.__getitem__)
            log_prob = todo.pop(ys)
            if ys not in joint_cache:
                logp = model.joiner(enc[t : t + 1], dec_of(ys), project_input=False).log_softmax(dim=-1)[0]  # (V,)
                values, indexes = logp.topk(min(beam + 1, logp.numel()))
                joint_cache[ys] = (logp[blank].item(), values.tolist(), indexes.tolist())
            blank_lp, values, indexes = joint_cache[ys]
            _add(kept, ys, log_prob + blank_lp)
            for v, i in zip(values, indexes):
                if i != blank:
                    _add(todo, ys + (i,), log_prob + v)
            best_todo = max(todo.values(), default=-math.inf)
            better = {k: v for k, v in kept.items() if v > best_todo}
            if len(better) >= beam:
                kept = better
                break
        kept = dict(sorted(kept.items(), key=lambda kv: kv[1], reverse=True)[:beam])

    def score(item: tuple[tuple[int, ...], float]) -> float:
        return item[1] / len(item[0]) if length_norm else item[1]

    best = max(kept.items(), key=score)[0]
    return list(best[context_size:])
