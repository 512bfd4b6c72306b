"""Small hand-made transducer-like models whose joiner we control, so that search results are known."""

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TinyDecoder(nn.Module):
    """Stateless decoder: embedding of the last context_size labels, concatenated, then Linear."""

    def __init__(self, vocab_size: int, dim: int, context_size: int) -> None:
        super().__init__()
        self.context_size = context_size
        self.embedding = nn.Embedding(vocab_size, dim)
        self.linear = nn.Linear(dim * context_size, dim)
        self.calls = 0  # rows computed, to check that decoder work is not repeated

    def forward(self, y: Tensor, need_pad: bool = True) -> Tensor:
        assert not need_pad and y.ndim == 2 and y.size(1) == self.context_size
        self.calls += y.size(0)
        return self.linear(self.embedding(y).flatten(1)).unsqueeze(1)  # (N, 1, dim)


class TinyJoiner(nn.Module):
    def __init__(self, enc_dim: int, dec_dim: int, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.encoder_proj = nn.Linear(enc_dim, dim)
        self.decoder_proj = nn.Linear(dec_dim, dim)
        self.output_linear = nn.Linear(dim, vocab_size)

    def forward(self, enc: Tensor, dec: Tensor, project_input: bool = True) -> Tensor:
        if project_input:
            enc, dec = self.encoder_proj(enc), self.decoder_proj(dec)
        return self.output_linear(torch.tanh(enc + dec))


class TinyTransducer(nn.Module):
    """Random-weight transducer-like model (float64 so that batched and single runs agree to the last bit)."""

    def __init__(self, vocab_size: int = 5, dim: int = 8, context_size: int = 2, blank_id: int = 0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.blank_id, self.vocab_size, self.context_size = blank_id, vocab_size, context_size
        self.decoder = TinyDecoder(vocab_size, dim, context_size)
        self.joiner = TinyJoiner(dim, dim, dim, vocab_size)
        with torch.no_grad():
            self.joiner.output_linear.weight.mul_(3.0)  # sharper distributions, fewer near-ties
        self.double()


class ScriptDecoder(nn.Module):
    """Decoder output = one-hot of the last label of the context."""

    def __init__(self, vocab_size: int, context_size: int) -> None:
        super().__init__()
        self.vocab_size, self.context_size = vocab_size, context_size

    def forward(self, y: Tensor, need_pad: bool = True) -> Tensor:
        assert not need_pad and y.size(1) == self.context_size
        return F.one_hot(y[:, -1], self.vocab_size).double().unsqueeze(1)  # (N, 1, V)


class ScriptJoiner(nn.Module):
    """Encoder frame = one-hot of the label meant for that frame (blank: none). Emits that label, strongly, unless it
    was the last label emitted; blank otherwise. A little deterministic noise keeps the other scores distinct."""

    def __init__(self, vocab_size: int, blank_id: int, peak: float) -> None:
        super().__init__()
        self.encoder_proj = nn.Identity()
        self.decoder_proj = nn.Identity()
        self.blank_id, self.peak = blank_id, peak
        g = torch.Generator().manual_seed(1)
        self.register_buffer("noise", torch.rand(vocab_size, vocab_size, vocab_size, generator=g, dtype=torch.float64))

    def forward(self, enc: Tensor, dec: Tensor, project_input: bool = True) -> Tensor:
        enc, dec = torch.broadcast_tensors(enc, dec)
        meant, last = enc.argmax(-1), dec.argmax(-1)
        target = torch.where((meant != self.blank_id) & (meant != last), meant, torch.full_like(meant, self.blank_id))
        return self.peak * F.one_hot(target, enc.size(-1)).double() + self.noise[meant, last]


class ScriptTransducer(nn.Module):
    def __init__(self, vocab_size: int = 6, context_size: int = 2, blank_id: int = 0, peak: float = 8.0):
        super().__init__()
        self.blank_id, self.vocab_size, self.context_size = blank_id, vocab_size, context_size
        self.decoder = ScriptDecoder(vocab_size, context_size)
        self.joiner = ScriptJoiner(vocab_size, blank_id, peak)

    def encoder_out_for(self, frames: list[list[int]]) -> tuple[Tensor, Tensor]:
        """(B, T, V) one-hot encoder output of per-frame intended labels (0 = blank), padded, and lengths."""
        t_max = max(len(f) for f in frames)
        x = torch.zeros(len(frames), t_max, dtype=torch.int64)
        for i, f in enumerate(frames):
            x[i, : len(f)] = torch.tensor(f, dtype=torch.int64)
        enc = F.one_hot(x, self.vocab_size).double()
        for i, f in enumerate(frames):
            enc[i, len(f) :] = torch.randn(t_max - len(f), self.vocab_size, dtype=torch.float64)  # padding garbage
        return enc, torch.tensor([len(f) for f in frames])


def tokens_of(hyps: list) -> list[list[int]]:
    """The token ids of each asr.decode.Hypothesis."""
    return [h.tokens for h in hyps]


def assert_same_hyps(got: list, want: list, tol: float = 1e-9) -> None:
    """Equal tokens and frames; log-probabilities and scores equal up to `tol` (batched and one-at-a-time runs may
    round differently)."""
    assert tokens_of(got) == tokens_of(want)
    assert [h.frames for h in got] == [h.frames for h in want]
    for g, w in zip(got, want):
        assert g.log_probs == pytest.approx(w.log_probs, abs=tol) and g.score == pytest.approx(w.score, abs=tol)


def one_symbol_path(model, enc: torch.Tensor, tokens: list[int], frames: list[int]) -> tuple[list[float], float]:
    """Teacher-forced log-probabilities of each token and of the whole path (a blank on every frame without a
    token) of a one-symbol-per-frame alignment. enc: (T, D) of one utterance."""
    context = [model.blank_id] * model.context_size
    at = dict(zip(frames, tokens))
    lps, total = [], 0.0
    for t in range(enc.size(0)):
        dec = model.joiner.decoder_proj(model.decoder(torch.tensor([context[-model.context_size :]]), need_pad=False))
        logp = model.joiner(model.joiner.encoder_proj(enc[t : t + 1]), dec[:, 0], project_input=False).log_softmax(-1)
        y = at.get(t, model.blank_id)
        total += float(logp[0, y])
        if y != model.blank_id:
            lps.append(float(logp[0, y]))
            context.append(y)
    return lps, total


def exact_best(model: nn.Module, encoder_out: Tensor, length_norm: bool) -> tuple[list[int], dict]:
    """Brute force: the posterior of every label sequence with at most one symbol per frame (all alignments
    summed), and the best sequence. encoder_out: (T, D) of one utterance."""
    blank, c = model.blank_id, model.context_size
    hyps = {(blank,) * c: 0.0}
    with torch.no_grad():
        enc = model.joiner.encoder_proj(encoder_out)
        for t in range(enc.size(0)):
            new: dict = {}
            for ys, lp in hyps.items():
                dec = model.joiner.decoder_proj(model.decoder(torch.tensor([ys[-c:]]), need_pad=False))[:, 0]
                logp = model.joiner(enc[t : t + 1], dec, project_input=False).log_softmax(-1)[0].tolist()
                for v, x in enumerate(logp):
                    key = ys if v == blank else ys + (v,)
                    old = new.get(key, -math.inf)
                    hi, lo = max(old, lp + x), min(old, lp + x)
                    new[key] = hi + math.log1p(math.exp(lo - hi)) if lo > -math.inf else hi
            hyps = new
    best = max(hyps, key=lambda ys: hyps[ys] / len(ys) if length_norm else hyps[ys])
    return list(best[c:]), hyps




SENTENCES = ["THE CAT SAT ON THE MAT", "A DOG RAN IN THE PARK", "HELLO WORLD AND GOOD DAY TO YOU"] * 20


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """(n, channels) float32: a sine with a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return np.stack([x] * channels, axis=1).astype(np.float32)


def make_exp_dir(tmp_path: Path) -> Path:
    """tmp_path/exp with epoch-1.pt of a tiny random real Transducer (80 fbank bins) whose saved config points at a
    tiny BPE model in tmp_path/lang."""
    from asr.data.bpe import train_bpe
    from asr.data.tokenizer import Tokenizer
    from asr.models import ConformerConfig, DecoderConfig, JoinerConfig, ModelConfig, build_model
    from asr.checkpoint import save_checkpoint

    bpe = train_bpe(SENTENCES, tmp_path / "lang", vocab_size=30)
    cfg = ModelConfig(
        vocab_size=Tokenizer(bpe).vocab_size,
        encoder=ConformerConfig(num_features=80, d_model=16, num_heads=2, ff_dim=32, num_layers=1, cnn_kernel=3),
        decoder=DecoderConfig(decoder_dim=16),
        joiner=JoinerConfig(joiner_dim=16),
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.joiner.output_linear.bias[0] -= 3.0  # emit some labels, so that the text is not empty
    exp = tmp_path / "exp"
    state = {"model": model.state_dict(), "model_avg": None, "batch_idx_train": 10,
             "config": {"model": asdict(cfg), "data": {"bpe_model": str(bpe)}}}
    save_checkpoint(exp / "epoch-1.pt", state)
    return exp
