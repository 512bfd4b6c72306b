"""asr-transcribe --format json|srt|vtt|ctm on the shared trained tone model: each output parses with its format's
rules and gives back the words of the plain-text transcript, with times inside the audio."""

from pathlib import Path

import pytest
import soundfile as sf

from asr.decode.formats import parse_ctm, parse_jsonl, parse_srt, parse_vtt, read_srt, read_vtt
from asr.decode.transcribe import main


def _texts(trained, capsys) -> dict[str, str]:
    assert main(["--exp-dir", str(trained.exp_dir), *map(str, trained.wavs)]) == 0
    return dict(line.split("\t") for line in capsys.readouterr().out.splitlines())


def test_json_lines_words_spell_the_text(trained, capsys):
    texts = _texts(trained, capsys)
    assert main(["--exp-dir", str(trained.exp_dir), "--format", "json", *map(str, trained.wavs)]) == 0
    got = parse_jsonl(capsys.readouterr().out)
    assert [t.id for t in got] == [str(p) for p in trained.wavs]
    for t, wav in zip(got, trained.wavs):
        assert t.text == texts[str(wav)]
        assert [w.word for w in t.words] == t.text.split()
        duration = sf.info(str(wav)).duration
        assert all(0 <= w.start <= w.end <= duration + 0.05 and 0 <= w.confidence <= 1 for w in t.words)
        assert all(a.end <= b.start for a, b in zip(t.words, t.words[1:]))  # in order, no overlap


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_one_file_on_stdout_many_into_a_folder(trained, capsys, tmp_path: Path, fmt: str):
    texts = _texts(trained, capsys)
    wav = trained.wavs[0]
    assert main(["--exp-dir", str(trained.exp_dir), "--format", fmt, "--max-words", "2", str(wav)]) == 0
    cues = (parse_srt if fmt == "srt" else parse_vtt)(capsys.readouterr().out)
    assert " ".join(c.text.replace("\n", " ") for c in cues).split() == texts[str(wav)].split()
    assert all(len(c.text.split()) <= 2 for c in cues)

    # several files need --output-dir (else a clear error, exit 2); with it, one file each
    assert main(["--exp-dir", str(trained.exp_dir), "--format", fmt, *map(str, trained.wavs[:3])]) == 2
    assert "--output-dir" in capsys.readouterr().err
    out = tmp_path / "subs"
    assert main(["--exp-dir", str(trained.exp_dir), "--format", fmt, "--output-dir", str(out),
                 *map(str, trained.wavs[:3])]) == 0
    for w in trained.wavs[:3]:
        cues = (read_srt if fmt == "srt" else read_vtt)(out / f"{w.stem}.{fmt}")
        assert " ".join(c.text.replace("\n", " ") for c in cues).split() == texts[str(w)].split()


def test_ctm_sorted_by_file_name(trained, capsys):
    texts = _texts(trained, capsys)
    files = list(reversed(trained.wavs[:4]))
    assert main(["--exp-dir", str(trained.exp_dir), "--format", "ctm", *map(str, files)]) == 0
    records = parse_ctm(capsys.readouterr().out)
    assert [r.file for r in records] == sorted(r.file for r in records)
    for w in files:
        assert [r.word for r in records if r.file == w.stem] == texts[str(w)].split()


def test_word_times_need_the_pytorch_model(tmp_path: Path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, [0.0] * 1600, 16000)
    assert main(["--jit", str(tmp_path / "jit.pt"), "--format", "json", str(wav)]) == 2
    assert "--exp-dir" in capsys.readouterr().err
