"""The corpus formats the importer reads, by name (the --format of the CLI and of recipes/custom/run.sh)."""

from __future__ import annotations

from pathlib import Path

from asr.data.importers.entries import RawSet
from asr.data.importers.folder import read_folder, read_table
from asr.data.importers.kaldi import read_kaldi
from asr.data.importers.lhotse_dir import is_shar, read_manifests, read_shar

FORMATS = ("folder", "tsv", "kaldi", "lhotse")


def read_corpus(fmt: str, corpus: Path, out_dir: Path, speaker_from: str = "dir") -> list[RawSet]:
    """The sets of `corpus` in format `fmt` ("tsv" also reads .csv; "lhotse" also reads a Shar directory, whose
    audio is written under `out_dir`/audio/shar)."""
    corpus = corpus.absolute()  # the manifests name audio by absolute path: usable from any working dir
    if fmt == "folder":
        return read_folder(corpus, speaker_from)
    if fmt == "tsv":
        return read_table(corpus)
    if fmt == "kaldi":
        return read_kaldi(corpus)
    if fmt == "lhotse":
        if not corpus.is_dir():
            raise FileNotFoundError(f"no folder {corpus}")
        return read_shar(corpus, out_dir.absolute() / "audio" / "shar") if is_shar(corpus) else read_manifests(corpus)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
