"""recipes/custom end to end at a tiny scale: a synthesised corpus in the folder format, imported, trained, decoded.

Minutes, not seconds: marked slow (CI runs it), like tests/test_recipe.py whose tiny model and sizes it reuses.
The corpus is the demo corpus's train-clean-100 (scripts/make_demo_corpus.py, 3 minutes of TTS speech) rewritten
as a folder of `<speaker>/<utt>.flac` + `<utt>.txt` with a few broken items among them, given as one set: stage 0
must skip and count the broken items and split the rest by speaker; training must lower the loss, and decoding
must write a WER for every test set (what the model learns in 60 epochs is tests/test_recipe.py's to check).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tests.test_recipe import EPOCHS, TRAIN_ARGS, _train_losses, _wer

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "custom" / "run.sh"
VOCAB = 64  # the demo's units: letters and common pieces
# A few epochs: this test checks the custom recipe's plumbing (import, split, features, BPE, train, decode, report);
# how well the shared library learns is tests/test_recipe.py's (60 epochs, bounds on the seen WER).
CUSTOM_EPOCHS = 6


def make_folder_corpus(demo: Path, out: Path) -> int:
    """Demo train-clean-100 as a folder corpus (+ 3 broken items); returns the number of good utterances."""
    n = 0
    for trans in sorted((demo / "LibriSpeech" / "train-clean-100").rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            uid, text = line.split(maxsplit=1)
            spk = uid.split("-")[0]
            (out / spk).mkdir(parents=True, exist_ok=True)
            shutil.copy(trans.parent / f"{uid}.flac", out / spk / f"{uid}.flac")
            (out / spk / f"{uid}.txt").write_text(text.lower() + ".\n")  # the importer upper-cases, drops the dot
            n += 1
    spk = sorted(p.name for p in out.iterdir())[0]
    first = sorted((out / spk).glob("*.flac"))[0]
    (out / spk / "broken.flac").write_bytes(b"not audio" * 100)
    (out / spk / "broken.txt").write_text("broken")
    sf.write(out / spk / "untranscribed.flac", sf.read(first)[0], 16000)
    (out / spk / "empty.flac").write_bytes(first.read_bytes())
    (out / spk / "empty.txt").write_text("  \n")
    return n


@pytest.mark.slow
def test_custom_recipe_tiny_end_to_end(tmp_path):
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (bash scripts/setup.sh installs it)")
    demo = tmp_path / "demo"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_corpus.py"), "--out", str(demo),
                    "--train-minutes", "3", "--eval-minutes", "0.5"], check=True, capture_output=True, timeout=600)
    corpus = tmp_path / "corpus"
    good = make_folder_corpus(demo, corpus)
    work = tmp_path / "work"
    cmd = [
        "bash", str(RUN), "--corpus", str(corpus), "--format", "folder", "--work-dir", str(work),
        "--vocab-size", str(VOCAB),
        "--import-args", "--dev-fraction 0.1 --test-fraction 0.1 --seed 0",
        "--prepare-args", "--perturb-speed true",
        # test_recipe.py's tiny model and schedule, and the demo experiment's choices for a few minutes of speech
        # (no SpecAugment, no dropout, Eden decaying by batches only), so that 60 epochs learn as much as there
        "--train-args", TRAIN_ARGS.replace(f"trainer.num_epochs={EPOCHS}", f"trainer.num_epochs={CUSTOM_EPOCHS}")
        + " data.spec_aug=false model.encoder.dropout=0.0 optim.lr_batches=400"
                                     " optim.lr_epochs=100 trainer.device=cpu trainer.amp=auto data.num_workers=1",
        "--decode-methods", "greedy modified_beam_search_lm",
        "--decode-args", "epoch=0 avg=1 test_sets=[train,test]",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]

    report = json.loads((work / "data" / "manifests" / "import_report.json").read_text())
    assert report["read"]["all"]["skipped"] == {"unreadable audio file": 1, "audio with no transcript line": 1,
                                                "empty transcript": 1}
    assert report["split"]["by"] == "speaker"
    sets = report["sets"]
    assert set(sets) == {"train", "dev", "test"}
    assert sum(s["utterances"] for s in sets.values()) == good
    assert "written sets:" in out  # the human-readable report is printed

    exp = work / "exp" / "custom"
    assert (exp / f"epoch-{CUSTOM_EPOCHS}.pt").is_file()
    losses = _train_losses(out)
    assert len(losses) >= 3 and losses[-1] < losses[0], losses  # it trains
    for method in ("greedy", "modified_beam_search_lm"):
        for name in ("train", "test"):
            for kind in ("recogs", "errs", "wer-summary"):
                assert (exp / method / f"{kind}-{name}-{method}.txt").is_file(), (method, name, kind, out[-2000:])
        for name in ("train", "test"):
            assert 0.0 <= _wer(exp / method / f"wer-summary-{name}-{method}.txt") <= 200.0
    assert re.search(r"train-greedy\s+[0-9.]+", out)  # the WER table at the end


def _tone_corpus(root: Path, n: int = 24) -> None:
    """n utterances of tones (4 speakers) with transcripts of a small vocabulary: enough for a 30-unit BPE model."""
    import numpy as np

    words = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex".split()
    rng = np.random.default_rng(0)
    for i in range(n):
        spk = root / f"spk{i % 4}"
        spk.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(16000 * (1.0 + 0.1 * (i % 5)))) / 16000
        sf.write(spk / f"u{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 20 * i) * t)).astype("float32"), 16000)
        (spk / f"u{i}.txt").write_text(" ".join(rng.choice(words, 6)))
    (root / "spk0" / "no-text.wav").write_bytes((root / "spk0" / "u0.wav").read_bytes())


@pytest.mark.slow  # three prepare.sh runs on a tone corpus: tens of seconds
def test_prepare_sh_imports_once_and_guards_its_data(tmp_path):
    corpus = tmp_path / "corpus"
    _tone_corpus(corpus)
    work = tmp_path / "work"
    work.mkdir()
    prepare = ROOT / "recipes" / "custom" / "prepare.sh"

    def run(*args):
        return subprocess.run(["bash", str(prepare), *args], cwd=work, capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))

    args = ("--corpus", str(corpus), "--format", "folder", "--vocab-size", "30", "--stop-stage", "2",
            "--import-args", "--dev-fraction 0.25 --test-fraction 0.25")
    r = run(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((work / "data" / "manifests" / "import_report.json").read_text())
    assert report["read"]["all"]["skipped"] == {"audio with no transcript line": 1}
    assert report["split"]["by"] == "speaker" and set(report["sets"]) == {"train", "dev", "test"}
    assert report["settings"]["split"]["dev_fraction"] == 0.25
    for name in ("train", "dev", "test"):  # the recipe's own manifest names (data.manifest_prefix=custom)
        assert (work / "data" / "manifests" / f"custom_supervisions_{name}.jsonl.gz").is_file()
        assert (work / "data" / "fbank" / f"custom_cuts_{name}.jsonl.gz").is_file()
    assert (work / "data" / "fbank" / "custom_cuts_train-all-shuf.jsonl.gz").is_file()
    assert not list((work / "data").rglob("librispeech_*"))
    assert (work / "data" / "lang_bpe_30" / "bpe.model").is_file()

    again = run(*args)
    assert again.returncode == 0 and again.stdout.count("already") == 3, again.stdout
    other = run("--corpus", str(corpus), "--format", "folder", "--stop-stage", "0")  # other import options
    assert other.returncode != 0 and "was prepared from" in other.stderr
    missing = run("--corpus", str(tmp_path / "nowhere"), "--format", "folder")
    assert missing.returncode != 0 and "no corpus at" in missing.stderr
