"""asr-export on a training run's directory: the files, the refusals with exit status 2."""

import shutil
from pathlib import Path

from asr.export.cli import main
from asr.export.onnx import check_model_dir
from asr.export.sherpa import transcribe_files


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
    assert "gone.model does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
