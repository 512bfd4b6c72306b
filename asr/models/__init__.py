"""asr.models: Conformer encoder (with optional half-rate layers, asr.models.time_reduction), stateless decoder,
joiner and the pruned RNN-T transducer."""

from asr.models.conformer import Conformer, ConformerConfig, EncoderFrames, subsampled_lengths
from asr.models.decoder import Decoder, DecoderConfig
from asr.models.joiner import Joiner, JoinerConfig
from asr.models.transducer import ModelConfig, Transducer, build_model

__all__ = [
    "Conformer",
    "ConformerConfig",
    "Decoder",
    "DecoderConfig",
    "EncoderFrames",
    "Joiner",
    "JoinerConfig",
    "ModelConfig",
    "Transducer",
    "build_model",
    "subsampled_lengths",
]
