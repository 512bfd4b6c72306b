"""Forced alignment of known token sequences: the most probable path through the full RNN-T lattice.

    from asr.decode import align
    hyps = align(model, x, x_lens, [tokenizer.encode([text])[0]])  # x: (B, T, F) features, x_lens: (B,)
    hyps[0].frames  # the encoder frame of each token; words_of(hyps[0], pieces, frame_shift_s(model)) for words

The lattice is the one the model is trained on (asr.loss, rnnt_type "regular", k2's semantics): nodes (t, u) for
frames t < T and labels emitted u <= U; from (t, u) a label arc emits token u on frame t and goes to (t, u + 1), a
blank arc goes to (t + 1, u); every path starts at (0, 0) and ends with the blank from (T - 1, U). Several tokens may
thus share a frame. Viterbi replaces the loss's log-add by max and keeps back-pointers.

Within a frame the label arcs form a chain, so the frame's update is a max-plus prefix scan over u, done with one
cummax: alpha[t, u] = C[u] + max_{v <= u} (entry[v] - C[v]), where entry[v] = alpha[t - 1, v] + blank[t - 1, v] is
entering frame t at label v and C[u] the sum of the frame's label log-probs below u. The argmax v is the back-pointer.
So the loop runs over frames only, batched over utterances; the joiner runs on (B, T, U + 1) in chunks of frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asr.decode.hypothesis import Hypothesis
from asr.decode.search_common import check_inputs, decoder_out_for

# Joiner outputs computed at once: (B, frames, U + 1, V) elements per chunk, 2^24 = 64 MiB in float32.
_CHUNK_ELEMENTS = 1 << 24
# Label log-probs are clamped here so that differences of prefix sums stay finite (a log_softmax that underflowed to
# -inf would otherwise give inf - inf); a path through such an arc is still as good as impossible.
_FLOOR = -1e10


@torch.inference_mode()
def align(model: nn.Module, features: Tensor, feature_lens: Tensor, tokens: list[list[int]]) -> list[Hypothesis]:
    """The best alignment of each utterance's tokens.

    Args:
        model: a transducer (`.encode`, `.decoder`, `.joiner`, `.blank_id`, `.context_size`), in eval mode.
        features: (B, T, F) input features.
        feature_lens: (B,) valid frames per utterance.
        tokens: B token id sequences (no blank).
    Returns:
        B hypotheses, in the order of the batch: the given tokens, the encoder frame of each, its log-probability
        on the best path, and that path's log-probability as score.
    Raises:
        ValueError: the number of sequences is not B, a token is blank or out of the vocabulary, or an utterance
            with tokens has no encoder frame.
    """
    encoder_out, encoder_out_lens = model.encode(features, feature_lens)
    return align_encoded(model, encoder_out, encoder_out_lens, tokens)


@torch.inference_mode()
def align_encoded(
    model: nn.Module, encoder_out: Tensor, encoder_out_lens: Tensor, tokens: list[list[int]]
) -> list[Hypothesis]:
    """`align` on encoder output.

    Args:
        model: a transducer (`.decoder`, `.joiner`, `.blank_id`, `.context_size`).
        encoder_out: (B, T, D) encoder output.
        encoder_out_lens: (B,) valid frames of each utterance.
        tokens: B token id sequences (no blank).
    Returns:
        As `align`.
    """
    check_inputs(encoder_out, encoder_out_lens)
    batch, num_frames, _ = encoder_out.shape
    if len(tokens) != batch:
        raise ValueError(f"got {len(tokens)} token sequences for a batch of {batch}")
    blank, ctx_size = model.blank_id, model.context_size
    vocab = getattr(model, "vocab_size", None)
    for i, seq in enumerate(tokens):
        if any(t == blank or t < 0 or (vocab is not None and t >= vocab) for t in seq):
            raise ValueError(f"sequence {i}: tokens must lie in [0, {vocab}) and not be blank ({blank}), got {seq}")
    t_lens = encoder_out_lens.tolist()
    for i, (n, seq) in enumerate(zip(t_lens, tokens)):
        if n == 0 and seq:
            raise ValueError(f"sequence {i}: cannot align {len(seq)} tokens to 0 encoder frames")
    if batch == 0:
        return []
    device = encoder_out.device
    max_u = max(len(seq) for seq in tokens)

    # decoder output for every prefix: context of node u = the last ctx_size labels of (blank * ctx_size + seq[:u])
    padded = [[blank] * ctx_size + seq + [blank] * (max_u - len(seq)) for seq in tokens]
    y = torch.tensor(padded, dtype=torch.int64, device=device)  # (B, ctx_size + U)
    contexts = y.unfold(1, ctx_size, 1)  # (B, U + 1, ctx_size)
    dec = decoder_out_for(model, contexts.reshape(-1, ctx_size)).reshape(batch, max_u + 1, -1)  # (B, U + 1, J)
    labels = y[:, ctx_size:]  # (B, U)
    enc = model.joiner.encoder_proj(encoder_out)  # (B, T, J)

    label_lp = torch.empty(batch, num_frames, max_u, dtype=torch.float64, device=device)  # (B, T, U)
    blank_lp = torch.empty(batch, num_frames, max_u + 1, dtype=torch.float64, device=device)  # (B, T, U + 1)
    vocab_size = vocab or model.joiner(enc[:1, :1], dec[:1, :1], project_input=False).size(-1)
    step = max(1, _CHUNK_ELEMENTS // max(1, batch * (max_u + 1) * vocab_size))
    for t0 in range(0, num_frames, step):
        logits = model.joiner(enc[:, t0 : t0 + step].unsqueeze(2), dec.unsqueeze(1), project_input=False)
        lp = logits.log_softmax(dim=-1).double()  # (B, t, U + 1, V)
        blank_lp[:, t0 : t0 + step] = lp[..., blank]
        index = labels.view(batch, 1, max_u, 1).expand(-1, lp.size(1), -1, -1)  # (B, t, U, 1)
        label_lp[:, t0 : t0 + step] = lp[:, :, :max_u].gather(3, index).squeeze(3)
    u_lens = [len(seq) for seq in tokens]
    frames, token_lp, scores = viterbi(label_lp, blank_lp, t_lens, u_lens)
    return [Hypothesis(list(seq), f, lps, s) for seq, f, lps, s in zip(tokens, frames, token_lp, scores)]


def viterbi(
    label_lp: Tensor, blank_lp: Tensor, t_lens: list[int], u_lens: list[int]
) -> tuple[list[list[int]], list[list[float]], list[float]]:
    """The best path of each RNN-T lattice (regular topology, see the module's docstring).

    Args:
        label_lp: (B, T, U) log-prob of emitting label u on frame t from node (t, u).
        blank_lp: (B, T, U + 1) log-prob of the blank from node (t, u).
        t_lens: frames of each lattice (T_b <= T; an empty lattice, T_b = U_b = 0, has score 0).
        u_lens: labels of each lattice (U_b <= U).
    Returns:
        For each lattice: the frame of each label on the best path, each label's log-prob there, the path's
        log-prob.
    """
    batch, num_frames, max_u = label_lp.shape
    if len(t_lens) != batch or len(u_lens) != batch or any(not 0 <= n <= num_frames for n in t_lens) or any(
        not 0 <= u <= max_u for u in u_lens
    ):
        raise ValueError(f"lengths {t_lens}, {u_lens} do not fit lattices of {batch} x {num_frames} x {max_u}")
    if blank_lp.shape != (batch, num_frames, max_u + 1):
        raise ValueError(f"blank_lp {tuple(blank_lp.shape)} does not match label_lp {tuple(label_lp.shape)}")
    label_lp = label_lp.double().clamp(min=_FLOOR)
    blank_lp = blank_lp.double()
    device = label_lp.device
    prefix = torch.cat([label_lp.new_zeros(batch, num_frames, 1), label_lp.cumsum(dim=2)], dim=2)  # (B, T, U + 1)
    alpha = torch.full((batch, max_u + 1), float("-inf"), dtype=torch.float64, device=device)  # (B, U + 1)
    alpha_last = torch.full((batch,), float("-inf"), dtype=torch.float64, device=device)  # alpha at t = T_b - 1
    entry = alpha.clone()
    entry[:, 0] = 0.0  # frame 0 is entered at (0, 0) only
    enter = torch.zeros(batch, num_frames, max_u + 1, dtype=torch.int64, device=device)  # (B, T, U + 1)
    last = torch.tensor([n - 1 for n in t_lens], device=device)  # (B,)
    final_u = torch.tensor(u_lens, device=device).view(batch, 1)  # (B, 1)
    for t in range(num_frames):
        best, arg = (entry - prefix[:, t]).cummax(dim=1)  # (B, U + 1)
        alpha = prefix[:, t] + best  # (B, U + 1) best path to (t, u)
        enter[:, t] = arg
        entry = alpha + blank_lp[:, t]  # (B, U + 1) best path to (t + 1, u)
        alpha_last = torch.where(last == t, entry.gather(1, final_u).squeeze(1), alpha_last)  # the final blank taken

    enter_l, label_l = enter.tolist(), label_lp.tolist()
    frames_out, lps_out, scores = [], [], []
    for b, (n, u) in enumerate(zip(t_lens, u_lens)):
        frames: list[int] = []
        lps: list[float] = []
        for t in range(n - 1, -1, -1):
            v = enter_l[b][t][u]
            for w in range(u - 1, v - 1, -1):  # labels v .. u - 1 are emitted on frame t
                frames.append(t)
                lps.append(label_l[b][t][w])
            u = v
        frames_out.append(frames[::-1])
        lps_out.append(lps[::-1])
        scores.append(float(alpha_last[b]) if n > 0 else 0.0)
    return frames_out, lps_out, scores
