"""sherpa-onnx's own hotwords on the exported tone-language model (asr.export.sherpa, `asr-transcribe --onnx
--hotwords`): our hotword file, checked by our rules, segmented with the export's bpe.model."""

import shutil

import pytest

from asr.decode.hotwords import HotwordError


@pytest.fixture(scope="module")
def model_dir(exported, trained, tmp_path_factory):
    """The fp32 export with the bpe.model that asr-export writes beside it."""
    pytest.importorskip("sherpa_onnx")
    out = tmp_path_factory.mktemp("sherpa_hotwords")
    for name in ("encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"):
        shutil.copyfile(exported / name, out / name)
    shutil.copyfile(trained.bpe_model, out / "bpe.model")
    return out


def _has(text: str, phrase: str) -> bool:
    return f" {phrase} " in f" {' '.join(text.split())} "


def test_sherpa_hotwords_raise_recall(model_dir, trained, samples, tmp_path):
    """The word pairs sherpa-onnx's unbiased modified beam search misses, as hotwords: more of them are found."""
    from asr.export.sherpa import SherpaTranscriber

    refs = trained.texts
    base = [SherpaTranscriber(model_dir, "modified_beam_search")(s) for s in samples]
    pairs = [(i, f"{a} {b}") for i, r in enumerate(refs) for a, b in zip(r.split(), r.split()[1:])]
    missed = sorted({g for i, g in pairs if not _has(base[i], g)})
    if not missed:
        pytest.skip("sherpa-onnx recognises every word pair of the test set")
    path = tmp_path / "hotwords.txt"
    path.write_text("# missed pairs\n" + "".join(f"{g.lower()}\n" for g in missed))  # case folded as ours
    biased = SherpaTranscriber(model_dir, "modified_beam_search", hotwords=path)
    hyps = [biased(s) for s in samples]
    assert sum(_has(hyps[i], g) for i, g in pairs) > sum(_has(base[i], g) for i, g in pairs), (missed, base, hyps)


def test_sherpa_hotwords_errors_before_sherpa(model_dir, tmp_path):
    """sherpa-onnx ends the process on a piece it cannot find: our checks answer first, naming the line."""
    from asr.export.sherpa import SherpaTranscriber

    path = tmp_path / "hotwords.txt"
    path.write_text("A B\nA G\n")
    with pytest.raises(HotwordError, match=r"hotwords.txt:2: 'A G': the BPE model cannot spell 'G'"):
        SherpaTranscriber(model_dir, "modified_beam_search", hotwords=path)
    with pytest.raises(ValueError, match="hotwords need modified_beam_search"):
        SherpaTranscriber(model_dir, "greedy", hotwords=path)
