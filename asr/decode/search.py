"""One entry to the three search methods, by name."""

from __future__ import annotations

from torch import Tensor, nn

from asr.decode.beam_search import beam_search
from asr.decode.config import METHODS
from asr.decode.greedy import check_inputs, greedy_search_batch
from asr.decode.modified_beam_search import modified_beam_search
from asr.lm.fusion import FusionScorer


def search(
    model: nn.Module,
    encoder_out: Tensor,
    encoder_out_lens: Tensor,
    method: str,
    beam: int = 4,
    max_sym_per_frame: int = 1,
    fusion: FusionScorer | None = None,
) -> list[list[int]]:
    """Token ids of the best hypothesis of each utterance.

    Args:
        model: a transducer (`.decoder`, `.joiner`, `.blank_id`, `.context_size`).
        encoder_out: (B, T, D) encoder output.
        encoder_out_lens: (B,) valid frames of each utterance.
        method: "greedy", "beam_search" (run one utterance at a time) or "modified_beam_search".
        beam: hypotheses kept by the beam searches.
        max_sym_per_frame: greedy only, most symbols per frame.
        fusion: modified_beam_search only, shallow fusion with a token n-gram and/or a lexicon (asr.lm.fusion).
    Returns:
        B lists of token ids, in the order of the batch.
    """
    if fusion is not None and method != "modified_beam_search":
        raise ValueError(f"an LM or lexicon is only used by modified_beam_search, not {method}")
    if method == "greedy":
        return greedy_search_batch(model, encoder_out, encoder_out_lens, max_sym_per_frame=max_sym_per_frame)
    if method == "modified_beam_search":
        return modified_beam_search(model, encoder_out, encoder_out_lens, beam=beam, fusion=fusion)
    if method == "beam_search":
        check_inputs(encoder_out, encoder_out_lens)
        return [
            beam_search(model, encoder_out[i : i + 1, :n], beam=beam) for i, n in enumerate(encoder_out_lens.tolist())
        ]
    raise ValueError(f"unknown decoding method {method!r}; choose one of {', '.join(METHODS)}")
