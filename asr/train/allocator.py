"""Keeps freed memory in the process's heap, so that a training step reuses the last step's pages.

glibc's malloc serves every block above its mmap threshold (at most 32 MB) with a fresh mmap and unmaps it on free.
A CPU training step allocates and frees its large activations and gradients every step (conformer_l12's first
subsampling convolution alone writes 320 MB at the paper's batch), so each step page-faults gigabytes of fresh,
zero-filled pages: measured on a 2-layer conformer_l12 at the paper's batch, about 0.9 M minor faults and 3 s of
kernel time per step, 15% of the step's CPU time. With mmap off and trimming deferred, the heap keeps those pages
(30-90 k faults, 0.1-0.3 s) and the step computes the same numbers; the resident high-water mark can grow a little
(blocks are reused from a heap that can fragment): bench/RESULTS_train_step.md gives both figures.
"""

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# -1 disables trimming (mallopt(3)): the heap keeps one step's high-water mark, which the next step needs again.
_NO_TRIM = -1


def keep_freed_memory() -> bool:
    """Turns off glibc's mmap for large blocks and its heap trimming (mallopt). Returns whether it applied: False
    off glibc (macOS, musl), where nothing changes. Call it once, early, in the training process."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NO_TRIM))
    if not ok:
        log.warning("mallopt refused: large blocks stay mmapped (slower CPU training steps, same results)")
    return ok
