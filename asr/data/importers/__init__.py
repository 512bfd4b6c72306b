"""asr.data.importers: any corpus to the manifests the recipes read (recipes/custom/prepare.sh stage 0).

    python -m asr.data.importers --format folder|tsv|kaldi|lhotse --corpus DIR --out data/manifests [options]

Modules:
    config      ImportConfig, TextNormConfig, SplitConfig (every setting, written into the report)
    entries     Entry, AudioRef, RawSet, SkipLog and the skip reasons shared by the readers
    folder      readers of a folder of audio + transcript files and of a TSV/CSV list
    kaldi       reader of Kaldi data directories (wav.scp with pipes, text, segments, utt2spk)
    lhotse_dir  reader of lhotse manifests (recordings + supervisions, or cuts) and of Shar directories
    formats     read_corpus(format, ...): the reader of a format name
    audio       probe(): a Recording (resampled, mono) or the reason its audio is unusable
    text        TextNormalizer (case, punctuation, numbers: as configured, nothing more)
    split       the seeded dev/test split, disjoint by speaker
    build       import_corpus(): assemble, split, validate, write the manifests and the report

Bad input never stops an import and is never lost silently: each skipped item is counted by reason, the first
examples of each reason are logged and kept in <out>/import_report.{json,txt}.
"""

from importlib import import_module

_EXPORTS = {
    "ImportConfig": "asr.data.importers.config",
    "TextNormConfig": "asr.data.importers.config",
    "SplitConfig": "asr.data.importers.config",
    "TextNormalizer": "asr.data.importers.text",
    "read_corpus": "asr.data.importers.formats",
    "import_corpus": "asr.data.importers.build",
    "split_supervisions": "asr.data.importers.split",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asr.data.importers' has no attribute {name!r}")
