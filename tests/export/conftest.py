"""Fixtures of the export tests: the tiny trained model of tests/conftest.py (`trained`) exported to ONNX and
TorchScript, and its PyTorch greedy / modified beam search outputs, which every runtime must reproduce."""

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory) -> Path:
    """The trained model exported: fp32 + int8 ONNX and jit.pt (skips without the `export` extra)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from asr.export.jit import export_jit
    from asr.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("exported")
    export_onnx(trained.model, trained.bpe_model, out, int8=True)
    export_jit(trained.model, trained.bpe_model, out / "jit.pt")
    return out


@pytest.fixture(scope="session")
def samples(trained):
    from asr.data.audio import read_audio

    return [read_audio(p) for p in trained.wavs]


@pytest.fixture(scope="session")
def pytorch_hyps(trained, samples) -> dict[str, list[list[int]]]:
    """Token ids of our PyTorch searches on training's features, one utterance at a time."""
    from asr.decode.search import search
    from asr.data.audio import fbank as training_fbank

    out = {"greedy": [], "modified_beam_search": []}
    with torch.inference_mode():
        for s in samples:
            f = training_fbank(s)  # (T, F)
            enc, enc_lens = trained.model.encode(f.unsqueeze(0), torch.tensor([f.size(0)]))
            for method in out:
                out[method].append(search(trained.model, enc, enc_lens, method, beam=4)[0].tokens)
    return out
