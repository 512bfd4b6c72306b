"""Structured config of the transducer losses and of their staging during training (asr.train.staging)."""

from dataclasses import dataclass


@dataclass
class LossConfig:
    # Which implementation computes the losses: "torch" (ours, pure PyTorch, the default), "fast_rnnt" or "k2"
    # (their compiled kernels, where installed). All three share k2's function names and semantics.
    backend: str = "torch"
    # S, labels kept per frame by pruning: 5 is what icefall's LibriSpeech recipes and the pruned RNN-T paper use.
    prune_range: int = 5
    # Smoothing of the simple loss (rnnt_loss_smoothed): icefall's pruned_transducer_stateless defaults.
    lm_scale: float = 0.25
    am_scale: float = 0.0
    # Weight of the simple loss once the pruned loss is fully on (icefall: 0.5).
    simple_loss_scale: float = 0.5
    # "switch": pruned loss off before warm_step, then on (first icefall recipe);
    # "ramp": simple 1.0 -> simple_loss_scale and pruned 0.1 -> 1.0 over warm_step (later recipes).
    schedule: str = "ramp"
    # Steps before the pruned loss is fully on; icefall uses 2000 batches for 960 h at large batch sizes.
    warm_step: int = 2000
    # k2's delay_penalty (0 disables): penalises late emission for streaming models; the trainer passes it to both
    # the simple and the pruned loss (icefall sets it for its streaming models; offline ones keep 0).
    delay_penalty: float = 0.0
