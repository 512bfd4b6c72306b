"""One batch's loss, with bad utterances dropped.

An utterance is dropped (and its cut id reported) when
  - its features hold NaN or inf,
  - it has more tokens than encoder frames (no alignment exists; the loss would be infinite), or
  - the model still returns a non-finite simple or pruned loss for it.
The model is run with reduction="none"; when some utterances come out non-finite, the forward is run again on the
good ones only, so no NaN ever reaches the backward. A batch with no good utterance gives `loss=None`.
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from asr.data.batch import Batch


@dataclass
class BatchLoss:
    # Weighted loss summed over the kept utterances, the one to backpropagate; None when every utterance was bad.
    loss: Tensor | None
    simple: float = 0.0  # unweighted simple loss, summed over kept utterances
    pruned: float = 0.0  # unweighted pruned loss, summed over kept utterances
    frames: float = 0.0  # encoder frames of the kept utterances (the per-frame denominator)
    utterances: int = 0  # kept utterances
    bad_cut_ids: list[str] = field(default_factory=list)


_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
AMP_MODES = ("none", *_AUTOCAST_DTYPES, "auto")  # trainer.amp; resolve_amp turns "auto" into one of the others


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bfloat16 GEMMs natively here (AVX512-BF16 or AMX): then they are about twice as fast as
    float32 ones; elsewhere bfloat16 is emulated and slower than float32.

    ASR_DISABLE_NATIVE_BF16=1 (any value but "", "0", "false", "no") makes it False, so that `trainer.amp=auto` picks
    float32 as on a CPU without AVX512-BF16: the way to run the suite or the demo as such a machine would."""
    import os  # here, not at the top: this function is the only part of the module that reads the environment

    if os.environ.get("ASR_DISABLE_NATIVE_BF16", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_amp(amp: str, device: torch.device) -> str:
    """trainer.amp for `device`: "auto" becomes bf16 on CUDA devices that support it (else fp16) and on CPUs with
    native bfloat16 (else none); "fp16" off CUDA is an error; other values are returned as they are."""
    if amp not in AMP_MODES:
        raise ValueError(f"trainer.amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "none"
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("trainer.amp=fp16 needs CUDA; use bf16, auto or none on CPU")
    return amp


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """torch.autocast for "fp16"/"bf16", a no-op for "none"."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = _AUTOCAST_DTYPES.get(amp)
    if dtype is None:
        raise ValueError(f"trainer.amp must be none, fp16 or bf16, got {amp!r}")
    return torch.autocast(device_type=device.type, dtype=dtype)


def _forward(model, x, x_lens, y, y_lens, prune_range, am_scale, lm_scale, delay_penalty, device,
             amp) -> tuple[Tensor, Tensor]:
    with autocast_context(device, amp):
        simple, pruned = model(
            x=x, x_lens=x_lens, y=y, y_lens=y_lens, prune_range=prune_range,
            am_scale=am_scale, lm_scale=lm_scale, reduction="none", delay_penalty=delay_penalty,
        )  # fmt: skip
    return simple.float(), pruned.float()  # (B,), (B,)


def compute_batch_loss(
    model: nn.Module,
    batch: Batch,
    *,
    prune_range: int,
    am_scale: float,
    lm_scale: float,
    simple_scale: float,
    pruned_scale: float,
    delay_penalty: float = 0.0,
    frames_fn: Callable[[Tensor], Tensor],
    device: torch.device,
    amp: str = "none",
) -> BatchLoss:
    """Forward of one batch; the loss to backpropagate is simple_scale * simple + pruned_scale * pruned.

    Args:
        model: a Transducer (or DDP around one): forward(x, x_lens, y, y_lens, prune_range, am_scale, lm_scale,
            reduction, delay_penalty) -> (simple (B,), pruned (B,)).
        batch: features (B, T, F), feature_lens (B,), tokens (B, U), token_lens (B,), cut ids (for the log of
            dropped utterances); on any device, the kept rows are moved to `device`.
        delay_penalty: k2's penalty on late emission, passed to both losses (0 disables).
        frames_fn: encoder frames from input frames, (B,) -> (B,) (the encoder's output_lengths).
    """
    x, y_lens = batch.features, batch.token_lens
    enc_frames = frames_fn(batch.feature_lens.cpu())  # (B,)
    finite_feats = torch.isfinite(x).flatten(1).all(dim=1).cpu()  # (B,)
    keep = finite_feats & (y_lens.cpu() <= enc_frames) & (enc_frames > 0)  # (B,)
    result = None
    for _ in range(2):  # the second pass runs only if the model returned non-finite losses for some utterances
        if not bool(keep.any()):
            break
        idx = keep.nonzero().squeeze(1)
        sub = batch.select(idx).to(device)
        simple, pruned = _forward(model, sub.features, sub.feature_lens, sub.tokens, sub.token_lens, prune_range,
                                  am_scale, lm_scale, delay_penalty, device, amp)  # fmt: skip
        finite = (torch.isfinite(simple) & torch.isfinite(pruned)).cpu()  # (b,)
        if bool(finite.all()):
            loss = (simple_scale * simple + pruned_scale * pruned).sum()
            result = BatchLoss(
                loss=loss,
                simple=float(simple.detach().sum()),
                pruned=float(pruned.detach().sum()),
                frames=float(enc_frames[idx].sum()),
                utterances=int(idx.numel()),
            )
            break
        keep[idx[~finite]] = False
    if result is None:
        result = BatchLoss(loss=None)
    result.bad_cut_ids = [batch.cut_ids[i] for i in (~keep).nonzero().squeeze(1).tolist()]
    return result


def zero_loss(
    model: nn.Module,
    num_features: int,
    *,
    prune_range: int,
    frames_fn: Callable[[Tensor], Tensor],
    device: torch.device,
    amp: str = "none",
) -> Tensor:
    """A loss equal to 0 whose backward reaches every parameter, for a DDP rank whose batch was all bad.

    DDP all-reduces gradients during backward, and only for a graph built by its own forward; so the rank runs the
    model on a dummy utterance (zeros, one token, in eval mode so BatchNorm statistics stay untouched) and
    multiplies the loss by 0. Its gradient adds nothing to the other ranks' sum.
    """
    frames = 1
    while int(frames_fn(torch.tensor([frames]))[0]) < prune_range + 1:
        frames += 1
    x = torch.zeros(1, frames, num_features, device=device)  # (1, T, F)
    x_lens = torch.tensor([frames], device=device)
    y = torch.ones(1, 1, dtype=torch.int64, device=device)  # (1, 1): token 1, any non-blank id
    y_lens = torch.ones(1, dtype=torch.int64, device=device)
    was_training = model.training
    model.eval()
    try:
        simple, pruned = _forward(model, x, x_lens, y, y_lens, prune_range, 0.0, 0.0, 0.0, device, amp)
    finally:
        model.train(was_training)
    return (simple.sum() + pruned.sum()) * 0.0

