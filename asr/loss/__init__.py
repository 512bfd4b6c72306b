"""asr.loss: transducer (RNN-T) losses with k2's names, arguments and semantics, in pure PyTorch.

    loss, (px_grad, py_grad) = rnnt_loss_smoothed(lm, am, symbols, blank, lm_only_scale, am_only_scale,
                                                  boundary=boundary, reduction="sum", return_grad=True)
    ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)     # (B, T, S)
    am_pruned, lm_pruned = do_rnnt_pruning(am_proj, lm_proj, ranges)          # (B, T, S, D) each
    logits = joiner(am_pruned, lm_pruned)                                     # (B, T, S, V)
    pruned_loss = rnnt_loss_pruned(logits, symbols, ranges, blank, boundary, reduction="sum")

`set_backend("fast_rnnt" | "k2")` sends the same calls to those packages' compiled kernels when installed.
"""

from asr.loss import mutual_information as _mi
from asr.loss import pruned as _pruned
from asr.loss import rnnt as _rnnt
from asr.loss.backend import BACKENDS, dispatch, get_backend, set_backend

mutual_information_recursion = dispatch(_mi.mutual_information_recursion)
get_rnnt_logprobs = dispatch(_rnnt.get_rnnt_logprobs)
get_rnnt_logprobs_smoothed = dispatch(_rnnt.get_rnnt_logprobs_smoothed)
get_rnnt_logprobs_joint = dispatch(_rnnt.get_rnnt_logprobs_joint)
get_rnnt_logprobs_pruned = dispatch(_pruned.get_rnnt_logprobs_pruned)
rnnt_loss_simple = dispatch(_rnnt.rnnt_loss_simple)
rnnt_loss_smoothed = dispatch(_rnnt.rnnt_loss_smoothed)
rnnt_loss = dispatch(_rnnt.rnnt_loss)
get_rnnt_prune_ranges = dispatch(_pruned.get_rnnt_prune_ranges)
do_rnnt_pruning = dispatch(_pruned.do_rnnt_pruning)
rnnt_loss_pruned = dispatch(_pruned.rnnt_loss_pruned)

__all__ = [
    "BACKENDS",
    "set_backend",
    "get_backend",
    "mutual_information_recursion",
    "get_rnnt_logprobs",
    "get_rnnt_logprobs_smoothed",
    "get_rnnt_logprobs_joint",
    "get_rnnt_logprobs_pruned",
    "rnnt_loss_simple",
    "rnnt_loss_smoothed",
    "rnnt_loss",
    "get_rnnt_prune_ranges",
    "do_rnnt_pruning",
    "rnnt_loss_pruned",
]
