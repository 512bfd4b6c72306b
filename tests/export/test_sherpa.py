"""sherpa-onnx (from the package registry) decodes our exported model as PyTorch does: the same greedy tokens one
stream at a time and batched, modified beam search and int8 within a WER margin; bad directories are refused by
our check before sherpa-onnx (which ends the process) sees them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asr.export.onnx import ExportError, add_metadata, check_model_dir, export_onnx, model_files, read_metadata
from asr.export.sherpa import decode_samples, make_recognizer, token_ids, transcribe_files
from asr.metrics.wer import Result, compute_wer

pytest.importorskip("sherpa_onnx")  # the `export` extra

ROOT = Path(__file__).resolve().parents[2]


def wer(refs: list[str], hyps: list[str]) -> float:
    stats = compute_wer([Result(str(i), r.split(), h.split()) for i, (r, h) in enumerate(zip(refs, hyps))])
    return 100.0 * stats.errors / stats.ref_words


def sherpa_ids(exported, samples, method="greedy", int8=False, batch=True) -> list[list[int]]:
    rec = make_recognizer(exported, method, int8=int8)
    return [token_ids(exported, pieces) for _, pieces in decode_samples(rec, samples, batch=batch)]


def texts(trained, hyps: list[list[int]]) -> list[str]:
    from asr.data.tokenizer import Tokenizer

    return [t.upper() for t in Tokenizer(trained.bpe_model).decode(hyps)]


def test_the_trained_model_recognises(trained, pytorch_hyps):
    """The fixture is a real model: its greedy WER is far below that of an untrained one (~100%)."""
    assert wer(trained.texts, texts(trained, pytorch_hyps["greedy"])) < 40


@pytest.mark.parametrize("batch", [False, True], ids=["one_stream", "decode_streams"])
def test_greedy_tokens_equal_pytorch(trained, exported, samples, pytorch_hyps, batch):
    assert sherpa_ids(exported, samples, batch=batch) == pytorch_hyps["greedy"]


def test_modified_beam_search_close_to_pytorch(trained, exported, samples, pytorch_hyps):
    ours = wer(trained.texts, texts(trained, pytorch_hyps["modified_beam_search"]))
    theirs = wer(trained.texts, texts(trained, sherpa_ids(exported, samples, "modified_beam_search")))
    assert abs(theirs - ours) <= 0.5, (ours, theirs)


def test_int8_close_to_fp32_and_small(trained, exported, samples):
    fp32 = wer(trained.texts, texts(trained, sherpa_ids(exported, samples)))
    int8 = wer(trained.texts, texts(trained, sherpa_ids(exported, samples, int8=True)))
    assert int8 <= fp32 + 1.5, (fp32, int8)
    for name in ("encoder", "decoder", "joiner"):
        assert read_metadata(exported / f"{name}.int8.onnx").items() >= read_metadata(exported / f"{name}.onnx").items()
    size = lambda int8: sum(p.stat().st_size for k, p in model_files(exported, int8).items() if k != "tokens")  # noqa
    assert size(True) < size(False)


def test_transcribe_files(trained, exported, pytorch_hyps):
    assert transcribe_files(exported, trained.wavs) == texts(trained, pytorch_hyps["greedy"])


def test_refuses_blank_not_zero_and_missing_bpe(trained, tmp_path):
    with pytest.raises(ExportError, match="no_such.model does not exist"):
        export_onnx(trained.model, tmp_path / "no_such.model", tmp_path / "out")
    model = trained.model
    saved = model.blank_id
    model.blank_id = 3
    try:
        with pytest.raises(ExportError, match="blank id is 3"):
            export_onnx(model, trained.bpe_model, tmp_path / "out")
    finally:
        model.blank_id = saved


@pytest.mark.parametrize("name,key", [("decoder", "vocab_size"), ("decoder", "context_size"),
                                      ("encoder", "model_type")])  # fmt: skip
def test_missing_metadata_is_named_before_sherpa_sees_it(exported, tmp_path, name, key):
    """sherpa-onnx itself ends the process (no exception) without vocab_size/context_size: a subprocess shows that
    our loader stops first with a message naming the key."""
    import onnx

    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    proto = onnx.load(str(bad / f"{name}.onnx"))
    kept = [p for p in proto.metadata_props if p.key != key]
    del proto.metadata_props[:]
    for p in kept:
        proto.metadata_props.add(key=p.key, value=p.value)
    onnx.save(proto, str(bad / f"{name}.onnx"))
    with pytest.raises(ExportError, match=f"metadata key '{key}' is missing"):
        check_model_dir(bad)
    code = ("import sys\nfrom asr.export.sherpa import make_recognizer\nfrom asr.export.onnx import ExportError\n"
            f"try:\n    make_recognizer({str(bad)!r})\nexcept ExportError as e:\n    print(e); sys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 3 and key in proc.stdout, proc.stdout + proc.stderr


def test_sherpa_alone_ends_the_process_on_missing_vocab_size(exported, tmp_path):
    """Why the check exists: the same directory given straight to sherpa-onnx kills the interpreter."""
    import onnx

    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    proto = onnx.load(str(bad / "decoder.onnx"))
    kept = [p for p in proto.metadata_props if p.key != "vocab_size"]
    del proto.metadata_props[:]
    for p in kept:
        proto.metadata_props.add(key=p.key, value=p.value)
    onnx.save(proto, str(bad / "decoder.onnx"))
    code = ("import sherpa_onnx\n"
            f"sherpa_onnx.OfflineRecognizer.from_transducer(encoder={str(bad / 'encoder.onnx')!r}, "
            f"decoder={str(bad / 'decoder.onnx')!r}, joiner={str(bad / 'joiner.onnx')!r}, "
            f"tokens={str(bad / 'tokens.txt')!r})\nprint('survived')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "survived" not in proc.stdout


def test_check_model_dir_names_missing_files_and_bad_tokens(exported, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    (bad / "joiner.onnx").unlink()
    with pytest.raises(ExportError, match="joiner.onnx is missing"):
        check_model_dir(bad)
    with pytest.raises(ExportError, match="int8.onnx is missing"):
        check_model_dir(_without(exported, tmp_path, "encoder.int8.onnx"), int8=True)
    d = _without(exported, tmp_path, None)
    lines = (d / "tokens.txt").read_text().splitlines()
    (d / "tokens.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ExportError, match="tokens.txt has"):
        check_model_dir(d)
    add_metadata(d / "decoder.onnx", {"vocab_size": "abc"})
    with pytest.raises(ExportError, match="vocab_size='abc'"):
        check_model_dir(d)


def _without(src: Path, tmp_path: Path, name: str | None) -> Path:
    d = tmp_path / f"copy-{name}"
    shutil.copytree(src, d)
    if name:
        (d / name).unlink()
    return d


def test_sherpa_transcriber(trained, exported, samples):
    from asr.export.sherpa import SherpaTranscriber

    """One stream at a time, as decode_samples(batch=False). (int8 batched may differ: dynamic quantization takes
    activation scales over the whole padded batch, so an utterance's int8 result depends on its batch mates.)"""
    transcribe = SherpaTranscriber(exported, "modified_beam_search", int8=True)
    rec = make_recognizer(exported, "modified_beam_search", int8=True)
    expected = [" ".join(text.split()).upper() for text, _ in decode_samples(rec, samples, batch=False)]
    assert [transcribe(s) for s in samples] == expected
