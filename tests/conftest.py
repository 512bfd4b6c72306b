"""Suite-wide settings, and the one tiny trained model (`trained`) that decoding, export and streaming tests share.

Precision: tests that train through `trainer.amp=auto` run in bfloat16 on a CPU with native bf16 (AVX512-BF16 or
AMX) and in float32 elsewhere. To run the suite as a CPU without native bf16 would, on one that has it, set
ASR_DISABLE_NATIVE_BF16=1 (asr.train.step.cpu_has_native_bf16 then answers False):

    ASR_DISABLE_NATIVE_BF16=1 .venv/bin/python -m pytest tests

The header of the pytest report says which precision `auto` picks here.
"""

import pytest
import torch


def pytest_report_header(config):
    from asr.sysinfo import cpu_facts

    facts = cpu_facts()
    how = "bf16" if facts["native_bf16"] else "float32"
    why = " (ASR_DISABLE_NATIVE_BF16 set)" if facts["native_bf16_disabled"] else ""
    return (f"cpu: {facts['cpu_model']}, {facts['cpu_cores']} cores, capability {facts['cpu_capability']}; "
            f"trainer.amp=auto trains in {how}{why}")


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The tone-language transducer of tests/tone_asr.py, trained once per session (a few tens of seconds), shared by
    the decoding, export and (later) streaming tests."""
    from tests.tone_asr import train_tiny

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_tiny(tmp_path_factory.mktemp("tone_asr"))
    finally:
        torch.set_num_threads(threads)
