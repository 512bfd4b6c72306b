#!/usr/bin/env python3
"""Trains a pruned RNN-T on LibriSpeech (or the demo corpus).

    python recipes/librispeech/train.py model=conformer_l12 data=librispeech trainer.exp_dir=exp/l12
    torchrun --nproc_per_node 8 recipes/librispeech/train.py model=conformer_l12 data=librispeech \
        trainer.exp_dir=exp/l12
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29400 \
        recipes/librispeech/train.py ...

Re-running the same command resumes from the latest checkpoint in trainer.exp_dir.
Configs: conf/train.yaml and its groups (model, data, loss, optim, trainer).
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from asr.config import register_configs
from asr.train import train

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    register_configs()
    main()
