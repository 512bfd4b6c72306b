"""Helpers of the data tests: a tiny LibriSpeech-layout corpus of noisy tones written with soundfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
MAX_DURATION = 6.0  # seconds of audio per batch of the data tests' AsrDataModule
WORDS = ("THE QUICK BROWN FOX JUMPS OVER A LAZY DOG SHE SELLS SEA SHELLS BY THE SHORE HOW NOW BROWN COW "
         "PETER PIPER PICKED A PECK OF PICKLED PEPPERS I'LL GO THERE TOMORROW IF IT DOESN'T RAIN").split()


def write_utt(path: Path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    audio = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed % 300) * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio.astype(np.float32), SR, subtype="PCM_16")


def make_corpus(root: Path, subsets: dict[str, int], seconds: float = 1.6) -> dict[str, dict[str, float]]:
    """root/LibriSpeech/<subset>/<spk>/<chapter>/...; returns {subset: {utt_id: duration}}."""
    out: dict[str, dict[str, float]] = {}
    seed = 0
    for si, (subset, n) in enumerate(subsets.items()):
        out[subset] = {}
        spk, chapter = 100 + si, 1000 + si
        d = root / "LibriSpeech" / subset / str(spk) / str(chapter)
        lines = []
        for i in range(n):
            uid = f"{spk}-{chapter}-{i:04d}"
            dur = seconds + 0.2 * i
            write_utt(d / f"{uid}.flac", dur, seed)
            seed += 1
            words = [WORDS[(seed * 7 + k) % len(WORDS)] for k in range(3 + i % 4)]
            lines.append(f"{uid} {' '.join(words)}")
            out[subset][uid] = round(dur * SR) / SR
        (d / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return out


def prepare_corpus(corpus_root: Path, work: Path) -> Path:
    """Manifests, features (speed-perturbed train), the train-all-shuf cuts and a 34-unit BPE model under `work`.

    The BPE model is trained on the transcripts and the whole word list, so that every test sentence is spellable.
    """
    from asr.data.bpe import train_bpe, train_transcripts
    from asr.data.features import combine_train, compute_subset
    from asr.data.prepare import prepare_librispeech_manifests

    prepare_librispeech_manifests(corpus_root / "LibriSpeech", work / "manifests")
    for subset in ("train-clean-100", "dev-clean"):
        compute_subset(work / "manifests", work / "fbank", subset, num_jobs=1)
    combine_train(work / "fbank", ["train-clean-100"])
    train_bpe(train_transcripts(work / "manifests") + [" ".join(WORDS)], work / "lang", vocab_size=34)
    return work
