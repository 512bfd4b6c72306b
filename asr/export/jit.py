"""TorchScript export: one `jit.pt` holding the encoder, decoder and joiner (traced from the export views of
asr.export.modules, so the same numbers and the same sherpa-style interfaces) and a scripted greedy search.

It loads with `torch.jit.load` alone, with no code of this repository on the path:

    m = torch.jit.load("jit.pt", _extra_files=(files := {"tokens.txt": ""}))  # files["tokens.txt"]: bytes
    encoder_out, encoder_out_lens = m(x, x_lens)        # x (N, T, 80) fbank, x_lens (N,) int64
    hyps = m.greedy_search(x, x_lens)                   # N lists of token ids (`piece id` lines in files["tokens.txt"])
    decoder_out = m.run_decoder(y)                      # y (N, context_size) int64, -1 = no label
    logit = m.run_joiner(encoder_out[:, t], decoder_out)
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import torch
from torch import Tensor, nn

from asr.export.modules import ExportDecoder, ExportEncoder, ExportJoiner
from asr.export.onnx import check_exportable
from asr.models.transducer import Transducer


class JitTransducer(nn.Module):
    """The scripted container of jit.pt (its submodules are traced)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, joiner: nn.Module, blank_id: int, context_size: int,
                 vocab_size: int, num_features: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.joiner = joiner
        self.blank_id = blank_id
        self.context_size = context_size
        self.vocab_size = vocab_size
        self.num_features = num_features

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """x: (N, T, F) fbank, x_lens: (N,) int64 -> encoder_out (N, T', J) projected, encoder_out_lens (N,)."""
        return self.encoder(x, x_lens)

    @torch.jit.export
    def run_decoder(self, y: Tensor) -> Tensor:
        """y: (N, context_size) int64 (-1: no label) -> (N, J)."""
        return self.decoder(y)

    @torch.jit.export
    def run_joiner(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        """encoder_out: (N, J), decoder_out: (N, J) -> (N, V) logits."""
        return self.joiner(encoder_out, decoder_out)

    @torch.jit.export
    def greedy_search(self, x: Tensor, x_lens: Tensor) -> List[List[int]]:
        """At most one symbol per frame (asr.decode's greedy with max_sym_per_frame=1), one utterance at a time.

        x: (N, T, F), x_lens: (N,) -> N lists of token ids.
        """
        encoder_out, encoder_out_lens = self.encoder(x, x_lens)  # (N, T', J), (N,)
        hyps: List[List[int]] = []
        for n in range(encoder_out.size(0)):
            context = torch.full((1, self.context_size), self.blank_id, dtype=torch.int64)  # (1, C)
            dec = self.decoder(context)  # (1, J)
            hyp: List[int] = []
            for t in range(int(encoder_out_lens[n])):
                y = int(self.joiner(encoder_out[n, t : t + 1], dec).argmax(dim=-1)[0])
                if y != self.blank_id:
                    hyp.append(y)
                    context = torch.cat([context[:, 1:], torch.full((1, 1), y, dtype=torch.int64)], dim=1)
                    dec = self.decoder(context)
            hyps.append(hyp)
        return hyps


@torch.no_grad()
def export_jit(model: Transducer, bpe_model: str | Path, path: str | Path) -> Path:
    """Write `path` (jit.pt): the model traced and scripted, with tokens.txt inside as an extra file."""
    from asr.export.onnx import write_tokens

    sp = check_exportable(model, bpe_model)
    model = model.to("cpu", torch.float32).eval()
    enc = model.encoder
    joiner_dim = model.joiner.encoder_proj.out_features
    parts = []
    for module, args in (
        (ExportEncoder(enc, model.joiner.encoder_proj),
         (torch.zeros(2, 123, enc.num_features), torch.tensor([123, 100], dtype=torch.int64))),
        (ExportDecoder(model), (torch.full((2, model.context_size), -1, dtype=torch.int64),)),
        (ExportJoiner(model), (torch.zeros(2, joiner_dim), torch.zeros(2, joiner_dim))),
    ):  # fmt: skip
        parts.append(torch.jit.trace(module.eval(), args, check_trace=False))
    scripted = torch.jit.script(JitTransducer(*parts, blank_id=model.blank_id, context_size=model.context_size,
                                              vocab_size=model.vocab_size, num_features=enc.num_features))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = path.with_name(path.name + ".tokens.tmp")
    write_tokens(sp, tokens)
    torch.jit.save(scripted, str(path), _extra_files={"tokens.txt": tokens.read_text(encoding="utf-8")})
    tokens.unlink()
    return path


def load_jit(path: str | Path) -> tuple[torch.jit.ScriptModule, list[str]]:
    """(the jit.pt module in eval mode, its pieces by id from the tokens.txt inside). Raises FileNotFoundError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no TorchScript model at {path} (export with asr-export --jit)")
    files = {"tokens.txt": ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    text = files["tokens.txt"]
    text = text.decode("utf-8") if isinstance(text, bytes) else text  # torch returns the bytes saved
    pieces = [line.split()[0] for line in text.splitlines()]
    return module.eval(), pieces


class JitAdapter(nn.Module):
    """A jit.pt module seen through the interface of asr.decode's searches (`.decoder`, `.joiner`, `.blank_id`,
    `.context_size`): its encoder output is already projected, so the projections are identities."""

    def __init__(self, module: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.module = module
        self.blank_id = int(module.blank_id)
        self.context_size = int(module.context_size)
        self.vocab_size = int(module.vocab_size)
        self.joiner = _JoinerView(module)
        self.decoder = _DecoderView(module)

    def encode(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """x: (N, T, F), x_lens: (N,) -> (N, T', J), (N,)."""
        return self.module(x, x_lens)


class _DecoderView(nn.Module):
    def __init__(self, module) -> None:
        super().__init__()
        self.module = module

    def forward(self, y: Tensor, need_pad: bool = False) -> Tensor:
        """y: (N, context_size) -> (N, 1, J)."""
        return self.module.run_decoder(y).unsqueeze(1)


class _JoinerView(nn.Module):
    def __init__(self, module) -> None:
        super().__init__()
        self.module = module
        self.encoder_proj = nn.Identity()
        self.decoder_proj = nn.Identity()

    def forward(self, encoder_out: Tensor, decoder_out: Tensor, project_input: bool = False) -> Tensor:
        """(..., J), (..., J) broadcastable -> (..., V)."""
        encoder_out, decoder_out = torch.broadcast_tensors(encoder_out, decoder_out)
        shape = encoder_out.shape[:-1]
        out = self.module.run_joiner(encoder_out.reshape(-1, encoder_out.size(-1)),
                                     decoder_out.reshape(-1, decoder_out.size(-1)))  # (prod(...), V)
        return out.reshape(*shape, -1)


class JitTranscriber:
    """Text of 16 kHz float32 samples decoded with jit.pt: training's fbank, then asr.decode's search `method`
    ("greedy", "modified_beam_search", "beam_search") on the TorchScript model; upper-cased like asr-transcribe's
    output. Raises FileNotFoundError when there is no jit.pt."""

    def __init__(self, path: str | Path) -> None:
        module, self.pieces = load_jit(path)
        self.model = JitAdapter(module)
        self.num_features = int(module.num_features)

    @torch.inference_mode()
    def __call__(self, samples, method: str = "greedy", beam: int = 4) -> str:
        """samples: (n,) float32 numpy array in [-1, 1] at 16 kHz."""
        from asr.decode.search import search
        from asr.data.audio import fbank

        feats = fbank(samples, self.num_features)  # (T, F)
        enc, enc_lens = self.model.encode(feats.unsqueeze(0), torch.tensor([feats.size(0)], dtype=torch.int64))
        hyp = search(self.model, enc, enc_lens, method, beam=beam)[0]
        return pieces_to_text([self.pieces[i] for i in hyp.tokens])


def transcribe_files_jit(path: str | Path, paths: list[str | Path], method: str = "greedy", beam: int = 4) -> list[str]:
    """Text of each audio file decoded with jit.pt (see JitTranscriber). Raises FileNotFoundError (no jit.pt) and
    asr.data.audio.AudioError (unreadable audio)."""
    from asr.data.audio import read_audio

    transcriber = JitTranscriber(path)
    return [transcriber(read_audio(Path(p)), method, beam) for p in paths]


def pieces_to_text(pieces: list[str]) -> str:
    """sentencepiece pieces -> upper-cased words (U+2581 starts a word)."""
    return " ".join("".join(pieces).replace("\u2581", " ").split()).upper()
