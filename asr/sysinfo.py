"""Facts about the machine that explain a run's speed and precision: CPU model, SIMD level, native bfloat16.

    >>> from asr.sysinfo import cpu_facts
    >>> cpu_facts()
    {'cpu_model': 'AMD EPYC', 'cpu_cores': 2, 'cpu_capability': 'AVX512', 'native_bf16': True,
     'native_bf16_disabled': False}

`native_bf16` is what `trainer.amp=auto` looks at (asr.train.step.cpu_has_native_bf16): without it training runs in
float32, which on a 2-core CPU fits fewer batches in a time budget. `native_bf16_disabled` says the environment
(ASR_DISABLE_NATIVE_BF16) turned it off on a CPU that has it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

DISABLE_ENV = "ASR_DISABLE_NATIVE_BF16"  # read by asr.train.step.cpu_has_native_bf16


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo "model name", else platform.processor()), or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_capability() -> str:
    """The SIMD level PyTorch's CPU kernels use here (torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2,
    AVX512, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:  # torch < 2.1
        return "unknown"


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def hardware_bf16() -> bool:
    """True when oneDNN runs bfloat16 natively on this CPU, whatever ASR_DISABLE_NATIVE_BF16 says."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_facts() -> dict:
    """CPU model, cores, SIMD level, native bf16 (as trainer.amp=auto sees it) and whether the environment hid it."""
    from asr.train.step import cpu_has_native_bf16

    native = cpu_has_native_bf16()
    return {"cpu_model": cpu_model(), "cpu_cores": cpu_cores(), "cpu_capability": cpu_capability(),
            "native_bf16": native, "native_bf16_disabled": (not native) and hardware_bf16()}
