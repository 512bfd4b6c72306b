"""Beam search of one utterance in the form of Graves (2012), Algorithm 1, as icefall's `beam_search`.

Several symbols may be emitted on one frame. On each frame, the most probable hypothesis of the set A still to
expand is taken out; it either ends the frame with blank (into B) or grows by one of the `beam` + 1 most probable
non-blank symbols (back into A). The frame ends once B holds `beam` hypotheses more probable than the best of A.
Hypotheses with the same labels are merged by adding their probabilities. Decoder outputs are cached per label
context and joiner outputs per hypothesis and frame, so no network work is repeated. Each hypothesis carries the
frame and log-probability of its labels; merged hypotheses keep those of the more probable one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from asr.decode.hypothesis import Hypothesis
from asr.decode.search_common import decoder_out_for

# A hypothesis in a set, keyed by its labels: (log-probability, frame of each label, log-probability of each label).
_Entry = tuple[float, tuple[int, ...], tuple[float, ...]]


def _add(hyps: dict[tuple[int, ...], _Entry], ys: tuple[int, ...], entry: _Entry) -> None:
    """Adds a hypothesis to a set, merging it with an equal one by log-adding the probabilities; the merged one
    keeps the frames and label log-probabilities of the more probable of the two."""
    old = hyps.get(ys)
    if old is None:
        hyps[ys] = entry
        return
    log_prob = entry[0]
    hi, lo = max(old[0], log_prob), min(old[0], log_prob)
    total = hi if lo == -math.inf else hi + math.log1p(math.exp(lo - hi))
    best = entry if log_prob > old[0] else old
    hyps[ys] = (total, best[1], best[2])


@torch.inference_mode()
def beam_search(
    model: nn.Module,
    encoder_out: Tensor,
    beam: int = 4,
    length_norm: bool = True,
    max_expansions_per_frame: int = 1000,
) -> Hypothesis:
    """Beam search of one utterance.

    Args:
        model: a transducer (`.decoder`, `.joiner`, `.blank_id`, `.context_size`).
        encoder_out: (1, T, D) encoder output of one utterance.
        beam: hypotheses kept after each frame.
        length_norm: pick the final hypothesis by log-probability divided by its length (icefall does).
        max_expansions_per_frame: a guard against a model that never prefers blank (which would keep a frame
            expanding for ever); 1000 is far above the handful of expansions a trained model needs.
    Returns:
        The best hypothesis (score: its log-probability, divided by its length with the start context when
        length_norm).
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

    # B of the previous frame; ys include the start context
    kept: dict[tuple[int, ...], _Entry] = {start: (0.0, (), ())}
    for t in range(enc.size(0)):
        todo = kept  # A
        kept = {}  # B
        joint_cache: dict[tuple[int, ...], tuple[float, list[float], list[int]]] = {}
        for _ in range(max_expansions_per_frame):
            ys = max(todo, key=lambda k: todo[k][0])
            log_prob, frames, lps = todo.pop(ys)
            if ys not in joint_cache:
                logp = model.joiner(enc[t : t + 1], dec_of(ys), project_input=False).log_softmax(dim=-1)[0]  # (V,)
                values, indexes = logp.topk(min(beam + 1, logp.numel()))
                joint_cache[ys] = (logp[blank].item(), values.tolist(), indexes.tolist())
            blank_lp, values, indexes = joint_cache[ys]
            _add(kept, ys, (log_prob + blank_lp, frames, lps))
            for v, i in zip(values, indexes):
                if i != blank:
                    _add(todo, ys + (i,), (log_prob + v, frames + (t,), lps + (v,)))
            best_todo = max((e[0] for e in todo.values()), default=-math.inf)
            better = {k: e for k, e in kept.items() if e[0] > best_todo}
            if len(better) >= beam:
                kept = better
                break
        kept = dict(sorted(kept.items(), key=lambda kv: kv[1][0], reverse=True)[:beam])

    def score(item: tuple[tuple[int, ...], _Entry]) -> float:
        return item[1][0] / len(item[0]) if length_norm else item[1][0]

    best = max(kept.items(), key=score)
    _, frames, lps = best[1]
    return Hypothesis(list(best[0][context_size:]), list(frames), list(lps), score(best))
