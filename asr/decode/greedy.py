"""Greedy search of a transducer, batched over utterances.

At each frame the most probable symbol is taken; a non-blank symbol is appended and, when `max_sym_per_frame` > 1,
the same frame is tried again with the new context. The decoder is run only for the utterances that have just
emitted a symbol (the others keep their decoder output), and the joiner only for the utterances still inside their
length: utterances are sorted by length so that those form a prefix of the batch.

Each hypothesis carries the frame and joiner log-probability of every token, and as score the log-probability of
its path: every symbol taken, blanks included (a frame that reaches `max_sym_per_frame` labels ends without one).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr.decode.hypothesis import Hypothesis
from asr.decode.search_common import active_counts, check_inputs, decoder_out_for, sort_by_length


@torch.inference_mode()
def greedy_search_batch(
    model: nn.Module, encoder_out: Tensor, encoder_out_lens: Tensor, max_sym_per_frame: int = 1
) -> list[Hypothesis]:
    """Greedy search for a batch of utterances.

    Args:
        model: a transducer (`.decoder`, `.joiner`, `.blank_id`, `.context_size`).
        encoder_out: (B, T, D) encoder output.
        encoder_out_lens: (B,) valid frames of each utterance.
        max_sym_per_frame: most symbols emitted on one frame (>= 1).
    Returns:
        B hypotheses, in the order of the batch (blank never appears among their tokens).
    """
    check_inputs(encoder_out, encoder_out_lens)
    if max_sym_per_frame < 1:
        raise ValueError(f"max_sym_per_frame must be >= 1, got {max_sym_per_frame}")
    blank, context_size = model.blank_id, model.context_size
    batch, num_frames, _ = encoder_out.shape
    device = encoder_out.device
    if batch == 0:
        return []

    order, sorted_lens = sort_by_length(encoder_out_lens)
    counts = active_counts(sorted_lens, num_frames)
    enc = model.joiner.encoder_proj(encoder_out[order])  # (B, T, J), sorted by decreasing length
    context = torch.full((batch, context_size), blank, dtype=torch.int64, device=device)  # (B, context_size)
    dec = decoder_out_for(model, context[:1]).expand(batch, -1).clone()  # (B, J): every start context is the same
    # tokens[b, t, s]: s-th symbol emitted on frame t, blank where none
    tokens = torch.full((batch, num_frames, max_sym_per_frame), blank, dtype=torch.int64, device=device)
    token_lp = torch.zeros(batch, num_frames, max_sym_per_frame, dtype=enc.dtype, device=device)  # their log-probs
    score = torch.zeros(batch, dtype=torch.float64, device=device)  # (B,) log-probability of each path

    for t in range(num_frames):
        n = counts[t]
        if n == 0:
            break
        rows = torch.arange(n, device=device)  # utterances that may still emit on this frame
        for s in range(max_sym_per_frame):
            logits = model.joiner(enc[rows, t], dec[rows], project_input=False)  # (N, V)
            y = logits.argmax(dim=-1)  # (N,)
            best_lp = logits.log_softmax(dim=-1).gather(1, y.unsqueeze(1)).squeeze(1)  # (N,)
            score[rows] += best_lp.to(score.dtype)
            emit = y != blank
            rows, y = rows[emit], y[emit]
            if rows.numel() == 0:
                break
            tokens[rows, t, s] = y
            token_lp[rows, t, s] = best_lp[emit]
            context[rows] = torch.cat([context[rows, 1:], y.unsqueeze(1)], dim=1)  # (N, context_size)
            dec[rows] = decoder_out_for(model, context[rows])

    emitted = tokens != blank  # (B, T, S)
    frame_of = torch.arange(num_frames, device=device).view(1, num_frames, 1).expand_as(tokens)  # (B, T, S)
    hyps: list[Hypothesis] = [None] * batch  # type: ignore[list-item]
    for i, mask, toks, frames, lps, sc in zip(
        order.tolist(), emitted.cpu(), tokens.cpu(), frame_of.cpu(), token_lp.cpu(), score.tolist()
    ):
        hyps[i] = Hypothesis(toks[mask].tolist(), frames[mask].tolist(), lps[mask].tolist(), sc)
    return hyps
