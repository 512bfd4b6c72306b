"""asr.data: lhotse glue of the recipes.

Modules:
    config        DataConfig (the Hydra schema of conf/data/*.yaml)
    tokenizer     Tokenizer: the sentencepiece BPE model (<blk> = 0)
    batch         Batch (features, lengths, tokens, cut ids, texts), lhotse_to_batch, ToBatch
    loaders       AsrDataModule: train/valid/test DataLoaders over cut manifests, yielding Batch
    filters       CutFilter (duration, alphabet, tokens vs the encoder's frames), FilteredCuts
    seeding       SeededBatches, seed_worker: augmentation that a resumed epoch repeats exactly
    unreadable    SkipUnreadableCuts: cuts whose features cannot be loaded leave their batch, named in it
    audio_folder  audio_folder_cuts: decoding inputs from a folder of audio files; librispeech_transcripts
    audio         read_audio, fbank: one audio file to training's features (asr-transcribe, exported runtimes)
    importers/    your own corpus to manifests: a folder (+ .txt), TSV/CSV, a Kaldi data dir, lhotse manifests or
                  Shar; text normalisation, seeded split, a report of what was kept and skipped (recipes/custom)
    prepare       manifests of a LibriSpeech-layout corpus, bad input skipped and counted (prepare.sh stage 1);
                  manifest_name, the file names of every manifest
    features      fbank with speed perturbation, MUSAN windows (prepare.sh stages 2, 3)
    bpe           sentencepiece training (prepare.sh stage 4)
    text          LibriSpeech-style transcript normalisation

The names below are imported lazily: `import asr.data` alone does not load lhotse.
"""

from importlib import import_module

_EXPORTS = {
    "DataConfig": "asr.data.config",
    "Tokenizer": "asr.data.tokenizer",
    "Batch": "asr.data.batch",
    "lhotse_to_batch": "asr.data.batch",
    "AsrDataModule": "asr.data.loaders",
    "CutFilter": "asr.data.filters",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asr.data' has no attribute {name!r}")
