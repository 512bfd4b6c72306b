"""Top-level structured configs of the entry points, registered in Hydra's ConfigStore.

    train_schema   TrainConfig: model, data, loss, optim, trainer (conf/train.yaml)
    decode_schema  DecodeConfig: weights, test sets, search method (conf/decode.yaml)

Each section's dataclass lives beside the code it configures; this module only assembles them.
"""

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from asr.data.config import DataConfig
from asr.decode.config import DecodeConfig
from asr.loss.config import LossConfig
from asr.models import ModelConfig
from asr.train.config import OptimConfig, TrainerConfig


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def register_configs() -> None:
    """Stores the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="decode_schema", node=DecodeConfig)
