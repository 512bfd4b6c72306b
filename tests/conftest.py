"""Suite-wide settings.

Precision: tests that train through `trainer.amp=auto` run in bfloat16 on a CPU with native bf16 (AVX512-BF16 or
AMX) and in float32 elsewhere. To run the suite as a CPU without native bf16 would, on one that has it, set
ASR_DISABLE_NATIVE_BF16=1 (asr.train.step.cpu_has_native_bf16 then answers False):

    ASR_DISABLE_NATIVE_BF16=1 .venv/bin/python -m pytest tests

The header of the pytest report says which precision `auto` picks here.
"""


def pytest_report_header(config):
    from asr.sysinfo import cpu_facts

    facts = cpu_facts()
    how = "bf16" if facts["native_bf16"] else "float32"
    why = " (ASR_DISABLE_NATIVE_BF16 set)" if facts["native_bf16_disabled"] else ""
    return (f"cpu: {facts['cpu_model']}, {facts['cpu_cores']} cores, capability {facts['cpu_capability']}; "
            f"trainer.amp=auto trains in {how}{why}")
