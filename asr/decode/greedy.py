"""Greedy search of a transducer, batched over utterances.

At each frame the most probable symbol is taken; a non-blank symbol is appended and, when `max_sym_per_frame` > 1,
the same frame is tried again with the new context. The decoder is run only for the utterances that have just
emitted a symbol (the others keep their decoder output), and the joiner only for the utterances still inside their
length: utterances are sorted by length so that those form a prefix of the batch.

Each hypothesis carries the frame and joiner log-probability of every token, and as score the log-probability of
its path: every symbol taken, blanks included (a frame that reaches `max_sym_per_frame` labels ends without one).
The log-probabilities cost no work per step: each step's logits and choices are kept (frames x V numbers in all,
the size of a few encoder outputs) and normalised in one batch after the search.
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
    steps: list[tuple[Tensor, Tensor, Tensor, int, int]] = []  # (logits, choices, rows, t, s) of each step

    for t in range(num_frames):
        n = counts[t]
        if n == 0:
            break
        rows = torch.arange(n, device=device)  # utterances that may still emit on this frame
        for s in range(max_sym_per_frame):
            logits = model.joiner(enc[rows, t], dec[rows], project_input=False)  # (N, V)
            y = logits.argmax(dim=-1)  # (N,)
            steps.append((logits, y, rows, t, s))
            emit = y != blank
            rows, y = rows[emit], y[emit]
            if rows.numel() == 0:
                break
            tokens[rows, t, s] = y
            context[rows] = torch.cat([context[rows, 1:], y.unsqueeze(1)], dim=1)  # (N, context_size)
            dec[rows] = decoder_out_for(model, context[rows])

    # step_lp[b, t, s]: log-probability of the symbol (label or blank) taken at that step, 0 where none was taken
    step_lp = torch.zeros(batch, num_frames, max_sym_per_frame, dtype=enc.dtype, device=device)
    if steps:
        logits_all = torch.cat([x[0] for x in steps])  # (M, V), M steps of all utterances
        taken = torch.cat([x[1] for x in steps])  # (M,)
        step_rows = torch.cat([x[2] for x in steps])  # (M,)
        sizes = torch.tensor([x[2].numel() for x in steps], device=device)  # (steps,)
        step_t = torch.tensor([x[3] for x in steps], device=device).repeat_interleave(sizes)  # (M,)
        step_s = torch.tensor([x[4] for x in steps], device=device).repeat_interleave(sizes)  # (M,)
        step_lp[step_rows, step_t, step_s] = logits_all.log_softmax(dim=-1).gather(1, taken.unsqueeze(1)).squeeze(1)
    scores = step_lp.double().sum(dim=(1, 2)).tolist()  # the path's log-probability
    hyps: list[Hypothesis] = [None] * batch  # type: ignore[list-item]
    for i, toks, lps, score in zip(order.tolist(), tokens.flatten(1).tolist(), step_lp.flatten(1).tolist(), scores):
        at = [j for j, tok in enumerate(toks) if tok != blank]  # j = t * max_sym_per_frame + s
        hyps[i] = Hypothesis([toks[j] for j in at], [j // max_sym_per_frame for j in at], [lps[j] for j in at], score)
    return hyps
