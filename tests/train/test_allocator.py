import platform
from pathlib import Path
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


@pytest.mark.parametrize("keep", [True, False])
def test_trainer_keep_freed_memory_switch(monkeypatch, keep):
    """asr.train.run.train applies keep_freed_memory only with trainer.keep_freed_memory=true (the default)."""
    from hydra import compose, initialize_config_dir

    import asr.train.run as run
    from asr.config import register_configs

    conf = Path(__file__).resolve().parents[2] / "conf"
    register_configs()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["trainer.exp_dir=exp/x", f"trainer.keep_freed_memory={keep}"])
    calls = []

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(run, "keep_freed_memory", lambda: calls.append(True))
    monkeypatch.setattr(run, "setup_distributed", stop)  # the next step: nothing is trained
    with pytest.raises(Stop):
        run.train(cfg)
    assert calls == ([True] if keep else [])
