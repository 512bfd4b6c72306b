"""asr-export on a training run's directory: the files, the refusals with exit status 2."""

import shutil
from pathlib import Path

import pytest

from asr.export.cli import main
from asr.export.onnx import check_model_dir
from asr.export.sherpa import transcribe_files

pytest.importorskip("sherpa_onnx")  # the `export` extra


def test_exports_a_run(trained, tmp_path, capsys, pytorch_hyps):
    from asr.data.tokenizer import Tokenizer

    out = tmp_path / "onnx"
    assert main(["--exp-dir", str(trained.exp_dir), "--epoch", "1", "--avg", "1", "--out", str(out), "--int8",
                 "--jit"]) == 0  # fmt: skip
    listed = capsys.readouterr().out
    for name in ("encoder.onnx", "decoder.int8.onnx", "joiner.onnx", "tokens.txt", "jit.pt", "bpe.model"):
        assert (out / name).is_file() and name in listed
    check_model_dir(out, int8=True)
    expected = [t.upper() for t in Tokenizer(trained.bpe_model).decode(pytorch_hyps["greedy"])]
    assert transcribe_files(out, trained.wavs) == expected


def test_missing_checkpoint(trained, tmp_path, capsys):
    assert main(["--exp-dir", str(trained.exp_dir), "--epoch", "7", "--out", str(tmp_path / "o")]) == 2
    assert "epoch-{7}.pt" in capsys.readouterr().err
    assert main(["--exp-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_bpe_model(trained, tmp_path, capsys):
    exp = tmp_path / "exp"
    shutil.copytree(trained.exp_dir, exp)
    assert main(["--exp-dir", str(exp), "--bpe-model", str(tmp_path / "gone.model"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no BPE model at" in err and "gone.model" in err
    assert not (tmp_path / "o").exists()


def test_evaluate_writes_decode_style_results(trained, tmp_path, exported, pytorch_hyps):
    """asr.export.evaluate on a LibriSpeech-layout folder: sherpa-onnx's WER equals that of PyTorch greedy search
    (the same tokens), in decode.py's result files."""
    from asr.data.tokenizer import Tokenizer
    from asr.export.evaluate import main as evaluate_main
    from asr.metrics.wer import Result, compute_wer

    folder = tmp_path / "test-clean" / "1" / "2"
    folder.mkdir(parents=True)
    lines = []
    for i, (wav, text) in enumerate(zip(trained.wavs, trained.texts)):
        shutil.copyfile(wav, folder / f"1-2-{i:04d}.wav")
        lines.append(f"1-2-{i:04d} {text}")
    (folder / "1-2.trans.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "results"
    assert evaluate_main(["--model-dir", str(exported), "--out-dir", str(out), str(tmp_path / "test-clean")]) == 0
    summary = (out / "wer-summary-test-clean-sherpa_onnx_greedy.txt").read_text().splitlines()
    hyps = Tokenizer(trained.bpe_model).decode(pytorch_hyps["greedy"])
    ours = compute_wer([Result(str(i), r.split(), h.upper().split()) for i, (r, h) in enumerate(zip(trained.texts,
                                                                                                     hyps))])
    assert summary[1].split("\t") == ["sherpa_onnx_greedy", f"{ours.wer:.2f}"]
    assert (out / "recogs-test-clean-sherpa_onnx_greedy.txt").is_file()
