import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from asr.train.allocator import keep_freed_memory
applied = {apply} and keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for i in range(8):
    before = faults()
    x = torch.ones(64 * 2**20 // 4)  # 64 MB: above glibc's largest mmap threshold
    del x
    counts.append(faults() - before)
print(applied, *counts[2:])
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
@pytest.mark.parametrize("apply", [False, True])
def test_freed_blocks_are_reused_without_page_faults(apply):
    """64 MB blocks allocated, filled and freed, six times after two warm-ups: with keep_freed_memory the pages
    come back from the heap (almost no minor faults: in most rounds; glibc may now and then serve one from another
    arena); without it every block is a fresh mmap (16 k faults of 4 kB pages each time)."""
    out = subprocess.run([sys.executable, "-c", PROBE.format(apply=apply)], capture_output=True, text=True,
                         check=True).stdout.split()
    applied, faults = out[0] == "True", sorted(int(n) for n in out[1:])
    assert applied == apply
    if apply:
        assert faults[len(faults) // 2] < 1000, faults  # the median round
    elif "[always]" not in _thp():  # with transparent huge pages always on, a fresh block faults in 2 MB pages
        assert faults[0] > 8000, faults


def _thp() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read()
    except OSError:
        return ""
