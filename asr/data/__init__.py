"""asr.data: lhotse glue of the recipes.

Modules:
    config     DataConfig (the Hydra schema of conf/data/*.yaml)
    tokenizer  Tokenizer: the sentencepiece BPE model (<blk> = 0)
    module     AsrDataModule (train/valid/test dataloaders), batch_to_model_inputs, CutFilter
    prepare    manifests of a LibriSpeech-layout corpus, bad input skipped and counted (prepare.sh stage 1)
    features   fbank with speed perturbation, MUSAN windows (prepare.sh stages 2, 3)
    bpe        sentencepiece training (prepare.sh stage 4)
    text       LibriSpeech-style transcript normalisation

The names below are imported lazily: `import asr.data` alone does not load lhotse.
"""

from importlib import import_module

_EXPORTS = {
    "DataConfig": "asr.data.config",
    "Tokenizer": "asr.data.tokenizer",
    "AsrDataModule": "asr.data.module",
    "batch_to_model_inputs": "asr.data.module",
    "CutFilter": "asr.data.module",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asr.data' has no attribute {name!r}")
