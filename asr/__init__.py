"""asr: pruned RNN-T (transducer) speech recognition in pure PyTorch.

Subpackages:
    asr.loss     the transducer losses, with k2's names and semantics (simple, smoothed, pruned, full)
    asr.models   Conformer encoder, stateless decoder, joiner and the transducer
    asr.data     lhotse glue: data module, tokenizer, corpus preparation
    asr.train    training loop, distributed set-up, checkpoints, schedules
    asr.decode   greedy, beam and modified beam search; transcription of audio files
    asr.metrics  word error rate

Shape legend used in every docstring and inline comment:
    B  batch            T  frames (after subsampling when said so)
    U  label length     V  vocabulary size (blank included)
    D  model dim        F  feature dim (80 fbank bins)
    S  prune range (labels kept per frame)
Batch first: (B, T, D). Lengths are `x_lens` / `y_lens` of shape (B,).
"""

__version__ = "0.1.0"
