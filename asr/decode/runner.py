"""Decoding a whole test set: batches of features -> encoder -> search -> words, with timing for the real-time
factor."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from asr.data.batch import Batch
from asr.data.tokenizer import Tokenizer
from asr.decode.search import search
from asr.lm.fusion import FusionScorer
from asr.metrics.wer import Result

log = logging.getLogger(__name__)

# Frame shift of the fbank features (10 ms, lhotse's and Kaldi's default): turns frame counts into seconds.
FRAME_SHIFT_S = 0.01


@dataclass
class DecodedSet:
    results: list[Result]
    audio_seconds: float
    elapsed_seconds: float

    @property
    def rtf(self) -> float:
        """Real-time factor: decoding time over audio duration."""
        return self.elapsed_seconds / self.audio_seconds if self.audio_seconds > 0 else float("nan")


@torch.inference_mode()
def decode_batches(
    model: nn.Module,
    batches: Iterable[Batch],
    tokenizer: Tokenizer,
    method: str,
    beam: int = 4,
    max_sym_per_frame: int = 1,
    device: torch.device | str = "cpu",
    log_every: int = 20,
    fusion: FusionScorer | None = None,
) -> DecodedSet:
    """Decodes every batch; reference and hypothesis are upper-cased and split into words.

    Args:
        model: the transducer, in eval mode, on `device`.
        batches: the batches of asr.data.AsrDataModule's test loaders.
        tokenizer: the BPE model of training (token ids -> text).
        method, beam, max_sym_per_frame: the search (see asr.decode.search.search).
        log_every: batches between progress lines.
        fusion: modified_beam_search's shallow fusion (asr.lm.fusion; None: none).
    """
    results: list[Result] = []
    audio = elapsed = 0.0
    for i, batch in enumerate(batches):
        x, x_lens, cut_ids, texts = batch.features, batch.feature_lens, batch.cut_ids, batch.texts
        start = time.perf_counter()
        enc, enc_lens = model.encode(x.to(device), x_lens.to(device))
        hyps = tokenizer.decode(search(model, enc, enc_lens, method, beam=beam, max_sym_per_frame=max_sym_per_frame,
                                       fusion=fusion))
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - start
        audio += float(x_lens.sum()) * FRAME_SHIFT_S
        for cut_id, ref, hyp in zip(cut_ids, texts, hyps):
            results.append(Result(cut_id, ref.upper().split(), hyp.upper().split()))
        if log_every and i % log_every == 0:
            log.info("batch %d, %d utterances decoded", i, len(results))
    return DecodedSet(results=results, audio_seconds=audio, elapsed_seconds=elapsed)
