"""A trained tiny transducer for decoding and export tests, in seconds of CPU: a "tone language".

Each word (A .. F) is a 0.2 s sine tone of its own frequency, words separated by short near-silences. A BPE model is
trained on the texts, features are lhotse's fbank (as training computes them), and a 1-layer Conformer with the
demo's per-utterance input normalisation learns it with the pruned RNN-T loss. The model decodes its test set well
but not perfectly, so searches and runtimes can be compared on real, non-trivial outputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SR = 16000
WORDS = ("A", "B", "C", "D", "E", "F")
FREQS = (300.0, 520.0, 850.0, 1300.0, 2000.0, 3100.0)
TONE_S, GAP_S, EDGE_S = 0.2, 0.08, 0.12
VOCAB = 16


@dataclass
class TrainedTiny:
    model: torch.nn.Module  # a Transducer in eval mode
    bpe_model: Path
    exp_dir: Path  # epoch-1.pt (model + config) and config.yaml, as training writes them
    wavs: list[Path]  # the test utterances
    texts: list[str]  # their transcripts
    train_seconds: float


def synth(words: list[str], rng: np.random.Generator, freqs: tuple[float, ...] = FREQS) -> np.ndarray:
    """Float32 samples in [-1, 1] of a word sequence; `freqs` (one per word) make another "voice"."""
    return synth_timed(words, rng, freqs)[0]


def synth_timed(words: list[str], rng: np.random.Generator,
                freqs: tuple[float, ...] = FREQS) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """`synth`'s samples (the same for the same generator state) and each word's tone onset and offset in seconds."""
    parts = [0.002 * rng.standard_normal(int(EDGE_S * SR))]
    spans = []
    at = parts[0].size
    for w in words:
        f = freqs[WORDS.index(w)] * (1 + 0.03 * rng.standard_normal())
        n = int(TONE_S * SR * (1 + 0.15 * rng.uniform(-1, 1)))
        t = np.arange(n) / SR
        env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms ramps
        parts.append(0.3 * rng.uniform(0.5, 1.0) * env * np.sin(2 * np.pi * f * t) + 0.002 * rng.standard_normal(n))
        spans.append((at / SR, (at + n) / SR))
        parts.append(0.002 * rng.standard_normal(int(GAP_S * SR * rng.uniform(0.5, 1.5))))
        at += n + parts[-1].size
    parts.append(0.002 * rng.standard_normal(int(EDGE_S * SR)))
    return np.concatenate(parts).astype(np.float32), spans


def corpus(n: int, seed: int, freqs: tuple[float, ...] = FREQS) -> list[tuple[list[str], np.ndarray]]:
    """n random utterances of 2 to 6 words: (words, samples); `freqs` as synth's."""
    return [(words, audio) for words, audio, _ in corpus_timed(n, seed, freqs)]


def corpus_timed(n: int, seed: int,
                 freqs: tuple[float, ...] = FREQS) -> list[tuple[list[str], np.ndarray, list[tuple[float, float]]]]:
    """`corpus` (the same audio for the same seed) with each word's tone onset and offset in seconds."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), size=int(rng.integers(2, 7)))]
        out.append((words, *synth_timed(words, rng, freqs)))
    return out


def joined(
    first: tuple[list[str], np.ndarray, list[tuple[float, float]]],
    second: tuple[list[str], np.ndarray, list[tuple[float, float]]],
    gap_s: float,
    rng: np.random.Generator,
    noise: float = 0.002,
) -> tuple[list[str], np.ndarray, list[tuple[float, float]]]:
    """Two timed utterances (corpus_timed's items) joined by `gap_s` seconds of near-silence (white noise of standard
    deviation `noise`, the level of the gaps between words): words, samples, each word's tone onset and offset."""
    (w1, a1, s1), (w2, a2, s2) = first, second
    gap = (noise * rng.standard_normal(int(gap_s * SR))).astype(np.float32)
    shift = (a1.size + gap.size) / SR
    return w1 + w2, np.concatenate([a1, gap, a2]), s1 + [(a + shift, b + shift) for a, b in s2]


def model_config() -> dict:
    return {
        "vocab_size": VOCAB, "blank_id": 0,
        "encoder": {"num_features": 80, "d_model": 32, "num_heads": 2, "ff_dim": 64, "num_layers": 1,
                    "cnn_kernel": 7, "dropout": 0.0, "subsampling_channels": 8, "input_norm": "utterance"},
        "decoder": {"decoder_dim": 32, "context_size": 2},
        "joiner": {"joiner_dim": 32},
    }  # fmt: skip


def train_tiny(work: Path, steps: int = 300, seed: int = 0, long_silences: int = 0) -> TrainedTiny:
    """Train the tone-language model under `work` (a few tens of seconds on one CPU core). `long_silences` > 0 adds
    that many training utterances made of two utterances joined by 0.5 to 2.5 s of near-silence (0: the shared
    fixture's model, unchanged)."""
    from lhotse import Fbank, FbankConfig
    from omegaconf import OmegaConf

    from asr.data.bpe import train_bpe
    from asr.data.tokenizer import Tokenizer
    from asr.models import ModelConfig, build_model
    from asr.checkpoint import save_checkpoint

    start = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    train, test = corpus(64, seed), corpus(12, seed + 1)
    texts = [" ".join(w) for w, _ in train]
    bpe = train_bpe(texts + [" ".join(WORDS)] * 4, work / "lang", vocab_size=VOCAB)
    tok = Tokenizer(bpe)
    if long_silences:
        rng = np.random.default_rng(seed + 1000)
        pairs = corpus_timed(2 * long_silences, seed + 1000)
        train = train + [joined(a, b, float(rng.uniform(0.5, 2.5)), rng)[:2] for a, b in zip(pairs[::2], pairs[1::2])]
        texts = [" ".join(w) for w, _ in train]
    fbank = Fbank(FbankConfig(num_filters=80))
    feats = [torch.from_numpy(fbank.extract(a, SR)).float() for _, a in train]
    labels = [torch.tensor(ids) for ids in tok.encode(texts)]

    torch.manual_seed(seed)
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), model_config()))
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=4e-3)
    gen = torch.Generator().manual_seed(seed)
    batch = 8
    for step in range(steps):
        idx = torch.randperm(len(feats), generator=gen)[:batch].tolist()
        x = torch.nn.utils.rnn.pad_sequence([feats[i] for i in idx], batch_first=True)  # (B, T, F)
        x_lens = torch.tensor([feats[i].size(0) for i in idx])
        y = torch.nn.utils.rnn.pad_sequence([labels[i] for i in idx], batch_first=True)  # (B, U)
        y_lens = torch.tensor([labels[i].numel() for i in idx])
        simple, pruned = model(x, x_lens, y, y_lens, prune_range=4, am_scale=0.0, lm_scale=0.25)
        warm = min(1.0, step / (steps / 3))
        loss = (0.5 + 0.5 * (1 - warm)) * simple + warm * pruned
        opt.zero_grad()
        (loss / batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    model.eval().requires_grad_(False)

    exp = work / "exp"
    config = {"model": model_config(), "data": {"bpe_model": str(bpe)}}
    save_checkpoint(exp / "epoch-1.pt", {"model": model.state_dict(), "config": config})
    (exp / "config.yaml").write_text(OmegaConf.to_yaml(config))
    wav_dir = work / "wav"
    wav_dir.mkdir(exist_ok=True)
    wavs = []
    for i, (_, audio) in enumerate(test):
        wavs.append(wav_dir / f"test-{i:02d}.wav")
        sf.write(str(wavs[-1]), audio, SR, subtype="PCM_16")
    return TrainedTiny(model, bpe, exp, wavs, [" ".join(w) for w, _ in test], time.perf_counter() - start)
