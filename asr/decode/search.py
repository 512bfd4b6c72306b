"""One entry to the three search methods, by name, its settings checked as a config's are (check_search_settings)."""

from __future__ import annotations

from torch import Tensor, nn

from asr.decode.beam_search import beam_search
from asr.decode.config import check_search_settings
from asr.decode.greedy import greedy_search_batch
from asr.decode.hypothesis import Hypothesis
from asr.decode.modified_beam_search import modified_beam_search
from asr.decode.search_common import check_inputs
from asr.lm.fusion import FusionScorer


def search(
    model: nn.Module,
    encoder_out: Tensor,
    encoder_out_lens: Tensor,
    method: str,
    beam: int = 4,
    max_sym_per_frame: int = 1,
    fusion: FusionScorer | None = None,
) -> list[Hypothesis]:
    """The best hypothesis of each utterance: tokens, the frame and log-probability of each, score.

    Args:
        model: a transducer (`.decoder`, `.joiner`, `.blank_id`, `.context_size`).
        encoder_out: (B, T, D) encoder output.
        encoder_out_lens: (B,) valid frames of each utterance.
        method: "greedy", "beam_search" (run one utterance at a time) or "modified_beam_search".
        beam: hypotheses kept by the beam searches.
        max_sym_per_frame: greedy only, most symbols per frame.
        fusion: modified_beam_search only, shallow fusion with a token n-gram and/or a lexicon (asr.lm.fusion).
    Returns:
        B hypotheses, in the order of the batch.
    """
    check_search_settings(method, beam, max_sym_per_frame, fusion is not None)
    if method == "greedy":
        return greedy_search_batch(model, encoder_out, encoder_out_lens, max_sym_per_frame=max_sym_per_frame)
    if method == "modified_beam_search":
        return modified_beam_search(model, encoder_out, encoder_out_lens, beam=beam, fusion=fusion)
    check_inputs(encoder_out, encoder_out_lens)  # beam_search, one utterance at a time
    return [beam_search(model, encoder_out[i : i + 1, :n], beam=beam) for i, n in enumerate(encoder_out_lens.tolist())]
