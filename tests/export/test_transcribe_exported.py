"""`asr-transcribe --onnx DIR` and `--jit FILE`: the exported runtimes behind the same command and output format,
giving the PyTorch model's text (greedy: the same tokens)."""

from asr.decode.transcribe import main


def _lines(capsys) -> dict[str, str]:
    out = capsys.readouterr().out
    return dict(line.split("\t", 1) for line in out.rstrip("\n").split("\n"))


def test_onnx_and_jit_give_the_pytorch_text(trained, exported, capsys):
    files = [str(p) for p in trained.wavs[:4]]
    assert main(["--exp-dir", str(trained.exp_dir), "--bpe-model", str(trained.bpe_model), *files]) == 0
    want = _lines(capsys)
    assert any(want.values()), "the trained model recognises nothing: the comparison would be empty"
    assert main(["--onnx", str(exported), *files]) == 0
    assert _lines(capsys) == want
    assert main(["--jit", str(exported / "jit.pt"), *files]) == 0
    assert _lines(capsys) == want


def test_bad_combinations_and_missing_files_are_named(trained, exported, tmp_path, capsys):
    wav = str(trained.wavs[0])
    assert main(["--onnx", str(exported), "--jit", str(exported / "jit.pt"), wav]) == 2
    assert "exactly one of --exp-dir, --onnx, --jit" in capsys.readouterr().err
    assert main(["--onnx", str(exported), "--lm", "x.arpa", "--method", "modified_beam_search", wav]) == 2
    assert "needs the PyTorch model" in capsys.readouterr().err
    assert main(["--onnx", str(exported), "--method", "beam_search", wav]) == 2
    assert "greedy or modified_beam_search" in capsys.readouterr().err
    assert main(["--onnx", str(tmp_path), wav]) == 2  # an empty folder: named before sherpa-onnx sees it
    assert str(tmp_path) in capsys.readouterr().err
    missing = tmp_path / "gone.wav"
    assert main(["--onnx", str(exported), wav, str(missing)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{wav}\t") and f"{missing}: no such file" in err
