"""Modified beam search (icefall's `modified_beam_search`): at most one symbol per frame, batched.

Every utterance keeps `beam` (K) hypothesis slots, held as tensors (B, K, ...): log-probability, the last
`context_size` labels, the projected decoder output, a hash of the label sequence and its length. On each frame the
joiner runs once on all (B, K) slots; the K best of the K * V extensions of each utterance are kept; extensions
with the same label sequence are merged by log-adding their probabilities (the first, most probable, slot keeps the
sum; the others are emptied). The decoder runs only for slots that have just grown by a label; the others inherit
their parent's decoder output, so no decoder work is repeated. Labels, with the frame and joiner log-probability of
each, are recovered at the end from back-pointers; a merged slot keeps the back-pointer of its most probable member,
so at every merge the frames follow the more probable alternative (icefall keeps the first one added).

With a `fusion` scorer (asr.lm.fusion: a token n-gram LM, a lexicon, or both) it is shallow fusion (icefall's
`modified_beam_search_lm_shallow_fusion`): every non-blank extension adds the scorer's score for that label in the
slot's state, and the final choice adds the scorer's score for ending there. Like the decoder output, a slot's
score row is looked up only when it grows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from asr.decode.hypothesis import Hypothesis
from asr.decode.search_common import active_counts, check_inputs, decoder_out_for, sort_by_length
from asr.lm.fusion import FusionScorer

# Two polynomial hashes modulo the Mersenne prime 2^31 - 1 identify a label sequence (with its length and last labels
# compared too, distinct sequences sharing both hashes are practically impossible). Products stay below 2^62.
_PRIME = 2**31 - 1
_MULTIPLIERS = (1_000_003, 998_244_353)


@torch.inference_mode()
def modified_beam_search(
    model: nn.Module,
    encoder_out: Tensor,
    encoder_out_lens: Tensor,
    beam: int = 4,
    length_norm: bool = True,
    fusion: FusionScorer | None = None,
) -> list[Hypothesis]:
    """Modified beam search for a batch of utterances.

    Args:
        model: a transducer (`.decoder`, `.joiner`, `.blank_id`, `.context_size`).
        encoder_out: (B, T, D) encoder output.
        encoder_out_lens: (B,) valid frames of each utterance.
        beam: hypotheses kept per utterance (K).
        length_norm: pick the final hypothesis by log-probability divided by its length (with the start context),
            as icefall does.
        fusion: scores added to the labels' log-probabilities (asr.lm.fusion), over the model's vocabulary; None:
            none.
    Returns:
        B hypotheses, in the order of the batch; score: the log-probability of the best hypothesis (with the fusion
        scores), divided by its length with the start context when length_norm.
    """
    check_inputs(encoder_out, encoder_out_lens)
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    blank, ctx_size = model.blank_id, model.context_size
    batch, num_frames, _ = encoder_out.shape
    device = encoder_out.device
    if batch == 0:
        return []
    k = beam

    order, sorted_lens = sort_by_length(encoder_out_lens)
    counts = active_counts(sorted_lens, num_frames)
    enc = model.joiner.encoder_proj(encoder_out[order])  # (B, T, J)
    joiner_dim = enc.size(-1)

    context = torch.full((batch, k, ctx_size), blank, dtype=torch.int64, device=device)  # (B, K, context_size)
    dec = decoder_out_for(model, context[0, :1]).reshape(1, 1, joiner_dim).expand(batch, k, -1).clone()  # (B, K, J)
    log_prob = torch.full((batch, k), float("-inf"), dtype=enc.dtype, device=device)  # (B, K)
    log_prob[:, 0] = 0.0  # one live hypothesis (the empty one) per utterance
    hashes = torch.zeros(batch, k, 2, dtype=torch.int64, device=device)  # (B, K, 2)
    lengths = torch.zeros(batch, k, dtype=torch.int64, device=device)  # (B, K) labels in each hypothesis
    multipliers = torch.tensor(_MULTIPLIERS, dtype=torch.int64, device=device)  # (2,)
    slot = torch.arange(k, device=device)  # (K,)
    # back-pointers: parent slot and emitted label (-1: none) of each slot on each frame
    parents = torch.zeros(batch, num_frames, k, dtype=torch.int64, device=device)  # (B, T, K)
    labels = torch.full((batch, num_frames, k), -1, dtype=torch.int64, device=device)  # (B, T, K)
    label_lp = torch.zeros(batch, num_frames, k, dtype=enc.dtype, device=device)  # (B, T, K) joiner log-prob of each
    if fusion is not None:
        start = fusion.initial_state()
        states = [[start] * k for _ in range(batch)]  # the scorer's state of each slot
        fused = _fusion_rows(fusion, [start], blank, enc.dtype, device).expand(batch, k, -1).clone()  # (B, K, V)

    for t in range(num_frames):
        n = counts[t]
        if n == 0:
            break
        enc_t = enc[:n, t].unsqueeze(1).expand(n, k, joiner_dim)  # (N, K, J)
        logits = model.joiner(enc_t.reshape(n * k, joiner_dim), dec[:n].reshape(n * k, joiner_dim), project_input=False)
        vocab = logits.size(-1)
        if fusion is not None and vocab != fusion.vocab_size:
            raise ValueError(f"the fusion scorer has {fusion.vocab_size} tokens, the model {vocab}")
        joint_lp = logits.log_softmax(dim=-1).reshape(n, k, vocab)  # (N, K, V)
        scores = joint_lp + log_prob[:n].unsqueeze(2)  # (N, K, V)
        if fusion is not None:
            scores = scores + fused[:n]
        top, index = scores.reshape(n, k * vocab).topk(k, dim=1)  # (N, K), sorted best first
        parent = torch.div(index, vocab, rounding_mode="floor")  # (N, K)
        label = index % vocab  # (N, K)
        grew = label != blank  # (N, K)

        parent_hash = hashes[:n].gather(1, parent.unsqueeze(2).expand(n, k, 2))  # (N, K, 2)
        grown_hash = (parent_hash * multipliers + (label + 1).unsqueeze(2)) % _PRIME
        new_hash = torch.where(grew.unsqueeze(2), grown_hash, parent_hash)  # (N, K, 2)
        new_len = lengths[:n].gather(1, parent) + grew.long()  # (N, K)
        parent_ctx = context[:n].gather(1, parent.unsqueeze(2).expand(n, k, ctx_size))  # (N, K, context_size)
        grown_ctx = torch.cat([parent_ctx[..., 1:], label.unsqueeze(2)], dim=2)
        new_ctx = torch.where(grew.unsqueeze(2), grown_ctx, parent_ctx)  # (N, K, context_size)

        # merge equal label sequences: same[i, a, b] is True when slots a and b hold the same sequence
        same = (
            (new_hash.unsqueeze(2) == new_hash.unsqueeze(1)).all(dim=3)
            & (new_len.unsqueeze(2) == new_len.unsqueeze(1))
            & (new_ctx.unsqueeze(2) == new_ctx.unsqueeze(1)).all(dim=3)
        )  # (N, K, K)
        first = same.int().argmax(dim=2)  # (N, K) the first (most probable) slot of each slot's group
        keep = first == slot
        merged = torch.logsumexp(top.unsqueeze(1).masked_fill(~same, float("-inf")), dim=2)  # (N, K)
        new_log_prob = torch.where(keep, merged, torch.full_like(merged, float("-inf")))

        new_dec = dec[:n].gather(1, parent.unsqueeze(2).expand(n, k, joiner_dim))  # (N, K, J)
        need = (grew & keep & new_log_prob.isfinite()).flatten().nonzero().squeeze(1)  # slots with a new context
        if need.numel() > 0:
            new_dec = new_dec.reshape(n * k, joiner_dim)
            new_dec[need] = decoder_out_for(model, new_ctx.reshape(n * k, ctx_size)[need])
            new_dec = new_dec.reshape(n, k, joiner_dim)

        if fusion is not None:
            parent_l, label_l, grew_l = parent.tolist(), label.tolist(), grew.tolist()
            states[:n] = [
                [fusion.advance(row[p], y) if g else row[p] for p, y, g in zip(ps, ys, gs)]
                for row, ps, ys, gs in zip(states[:n], parent_l, label_l, grew_l)
            ]
            new_fused = fused[:n].gather(1, parent.unsqueeze(2).expand(n, k, vocab))  # (N, K, V)
            if need.numel() > 0:
                new_fused = new_fused.reshape(n * k, vocab)
                grown = [states[i // k][i % k] for i in need.tolist()]
                new_fused[need] = _fusion_rows(fusion, grown, blank, enc.dtype, device)
                new_fused = new_fused.reshape(n, k, vocab)
            fused[:n] = new_fused

        log_prob[:n] = new_log_prob
        hashes[:n] = new_hash
        lengths[:n] = new_len
        context[:n] = new_ctx
        dec[:n] = new_dec
        parents[:n, t] = parent
        labels[:n, t] = torch.where(grew, label, torch.full_like(label, -1))
        label_lp[:n, t] = joint_lp.reshape(n, k * vocab).gather(1, index)  # (N, K)

    if fusion is not None:  # the scorer's score for ending each hypothesis where it is
        ends = torch.tensor([[fusion.final(x) for x in row] for row in states], dtype=log_prob.dtype, device=device)
        ended = log_prob + ends
        log_prob = torch.where(ended.isfinite().any(dim=1, keepdim=True), ended, log_prob)  # (B, K)
    final = log_prob / (lengths + ctx_size).to(log_prob.dtype) if length_norm else log_prob  # (B, K)
    best = final.argmax(dim=1)  # (B,)
    best_score = final.gather(1, best.unsqueeze(1)).squeeze(1).tolist()
    parents_l, labels_l, label_lp_l, best = parents.tolist(), labels.tolist(), label_lp.tolist(), best.tolist()
    hyps: list[Hypothesis] = [None] * batch  # type: ignore[list-item]
    for row, i in enumerate(order.tolist()):
        s, ys, frames, lps = best[row], [], [], []
        for t in range(sorted_lens[row] - 1, -1, -1):
            if labels_l[row][t][s] >= 0:
                ys.append(labels_l[row][t][s])
                frames.append(t)
                lps.append(label_lp_l[row][t][s])
            s = parents_l[row][t][s]
        hyps[i] = Hypothesis(ys[::-1], frames[::-1], lps[::-1], best_score[row])
    return hyps


def _fusion_rows(fusion: FusionScorer, states: list, blank: int, dtype: torch.dtype, device) -> Tensor:
    """(M, V) the scorer's rows for M states, 0 for blank (it costs nothing)."""
    rows = torch.from_numpy(np.stack([fusion.scores(x) for x in states])).to(dtype=dtype, device=device)
    rows[:, blank] = 0.0
    return rows
