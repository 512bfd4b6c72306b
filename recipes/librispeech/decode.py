#!/usr/bin/env python3
"""Decodes the test sets with a trained model and reports WER and real-time factor.

    cd recipes/librispeech
    python decode.py exp_dir=exp/l12 epoch=30 avg=9 decode=modified_beam_search
    python decode.py exp_dir=exp/l12 iter=120000 avg=4 decode=greedy
    python decode.py exp_dir=exp/l12 epoch=30 avg=9 use_averaged_model=true
    python decode.py exp_dir=exp/demo 'test_dirs=[download/demo/LibriSpeech/test-clean]'

Writes <exp_dir>/<method>/{recogs,errs,wer-summary}-<set>-<method>.txt for each test set and prints a WER table.
Configs: conf/decode.yaml and its group decode (greedy, beam_search, modified_beam_search). The work is
asr.decode.runner.decode_test_sets (model, BPE model and LM found by asr.decode.inference).
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from asr.config import register_configs
from asr.decode.config import DecodeConfig
from asr.decode.runner import decode_test_sets, wer_table

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@hydra.main(config_path=str(CONF_DIR), config_name="decode", version_base="1.3")
def main(dict_cfg: DictConfig) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s [%(name)s] %(message)s", level=logging.INFO)
    cfg: DecodeConfig = OmegaConf.to_object(dict_cfg)
    print("\n" + wer_table(decode_test_sets(cfg)))


if __name__ == "__main__":
    register_configs()
    main()
