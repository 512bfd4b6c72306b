"""Decoding an exported directory with sherpa-onnx (the package registry's `sherpa-onnx`, its own onnxruntime).

sherpa-onnx computes its Kaldi-compatible fbank itself from 16 kHz samples in [-1, 1] and batches streams by padding
features; blank is id 0, the decoder starts from the context [-1, ..., -1, 0]. `check_model_dir` runs first, because
sherpa-onnx ends the whole process (no exception) on a model without the metadata it needs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from asr.decode.hotwords import DEFAULT_SCORE, sherpa_hotword_files
from asr.export.onnx import ExportError, check_model_dir, model_files

SAMPLE_RATE = 16000
WORD_BOUNDARY = "\u2581"  # sentencepiece's word boundary
FEATURE_DIM = 80
# sherpa-onnx's names of our search methods.
METHODS = {"greedy": "greedy_search", "modified_beam_search": "modified_beam_search"}


def make_recognizer(model_dir: str | Path, method: str = "greedy", int8: bool = False, num_threads: int = 1,
                    beam: int = 4, hotwords: str | Path = "", hotword_score: float = DEFAULT_SCORE):
    """A sherpa_onnx.OfflineRecognizer on the exported directory (checked first; raises ExportError). `hotwords`:
    a hotword file (asr.decode.hotwords' format, checked by it; modified_beam_search only) for sherpa-onnx's own
    hotwords, segmented with the directory's bpe.model."""
    import sherpa_onnx

    if method not in METHODS:
        raise ValueError(f"sherpa-onnx decodes with {', '.join(METHODS)}, not {method!r}")
    metas = check_model_dir(model_dir, int8=int8)
    num_features = int(metas["encoder"].get("num_features", FEATURE_DIM))
    files = model_files(model_dir, int8=int8)
    with tempfile.TemporaryDirectory() as tmp:  # sherpa-onnx reads the hotword files while it is built
        biasing = {}
        if hotwords:
            if method != "modified_beam_search":
                raise ValueError(f"hotwords need modified_beam_search, not {method}")
            bpe_model = Path(model_dir) / "bpe.model"
            if not bpe_model.is_file():
                raise ExportError(f"{bpe_model} is missing: sherpa-onnx's hotwords need the BPE model (asr-export "
                                  f"writes it)")
            hotwords_file, bpe_vocab = sherpa_hotword_files(hotwords, bpe_model, tmp)
            biasing = dict(hotwords_file=str(hotwords_file), hotwords_score=hotword_score, modeling_unit="bpe",
                           bpe_vocab=str(bpe_vocab))
        return sherpa_onnx.OfflineRecognizer.from_transducer(
            encoder=str(files["encoder"]), decoder=str(files["decoder"]), joiner=str(files["joiner"]),
            tokens=str(files["tokens"]), num_threads=num_threads, sample_rate=SAMPLE_RATE, feature_dim=num_features,
            dither=0.0, decoding_method=METHODS[method], max_active_paths=beam, **biasing,
        )  # fmt: skip


def token_ids(model_dir: str | Path, pieces: list[str]) -> list[int]:
    """Ids (tokens.txt) of the pieces of a sherpa-onnx result, which spells the word boundary U+2581 as a space."""
    lines = (Path(model_dir) / "tokens.txt").read_text(encoding="utf-8").splitlines()
    ids = {piece.replace(WORD_BOUNDARY, " "): int(i) for piece, i in (line.split() for line in lines)}
    return [ids[p] for p in pieces]


def decode_samples(recognizer, samples: list[np.ndarray], batch: bool = True) -> list[tuple[str, list[str]]]:
    """(text, token pieces) of each float32 [-1, 1] 16 kHz signal: all streams in one `decode_streams` call when
    `batch`, else one `decode_stream` each."""
    streams = []
    for s in samples:
        stream = recognizer.create_stream()
        stream.accept_waveform(SAMPLE_RATE, np.ascontiguousarray(s, dtype=np.float32))
        streams.append(stream)
    if batch:
        recognizer.decode_streams(streams)
    else:
        for stream in streams:
            recognizer.decode_stream(stream)
    return [(s.result.text, list(s.result.tokens)) for s in streams]


class SherpaTranscriber:
    """Text of 16 kHz float32 samples decoded by sherpa-onnx, upper-cased and whitespace-normalised like
    `asr-transcribe`'s output. Construction checks the directory (ExportError) and loads the recognizer once."""

    def __init__(self, model_dir: str | Path, method: str = "greedy", int8: bool = False, num_threads: int = 1,
                 beam: int = 4, hotwords: str | Path = "", hotword_score: float = DEFAULT_SCORE) -> None:
        self.recognizer = make_recognizer(model_dir, method, int8, num_threads, beam, hotwords, hotword_score)

    def __call__(self, samples: np.ndarray) -> str:
        """samples: (n,) float32 in [-1, 1] at 16 kHz."""
        text, _ = decode_samples(self.recognizer, [samples], batch=False)[0]
        return " ".join(text.split()).upper()


def transcribe_files(model_dir: str | Path, paths: list[str | Path], method: str = "greedy", int8: bool = False,
                     num_threads: int = 1, beam: int = 4) -> list[str]:
    """Text of each audio file (any rate and channel count: read, averaged, resampled by us), upper-cased and
    whitespace-normalised like `asr-transcribe`'s output. Raises asr.data.audio.AudioError for a file that
    cannot be read and ExportError for a directory sherpa-onnx cannot load."""
    from asr.data.audio import read_audio

    recognizer = make_recognizer(model_dir, method, int8, num_threads, beam)
    samples = [read_audio(Path(p)) for p in paths]
    return [" ".join(text.split()).upper() for text, _ in decode_samples(recognizer, samples)]
