"""asr.metrics: word error rate from kaldialign alignments, and the result files of decoding."""

from asr.metrics.wer import (
    ErrorStats,
    Result,
    align,
    compute_wer,
    count_errors,
    write_errs,
    write_recogs,
    write_results,
    write_wer_summary,
)

__all__ = [
    "ErrorStats",
    "Result",
    "align",
    "compute_wer",
    "count_errors",
    "write_errs",
    "write_recogs",
    "write_results",
    "write_wer_summary",
]
