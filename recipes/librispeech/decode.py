#!/usr/bin/env python3
"""Decodes the test sets with a trained model and reports WER and real-time factor.

    cd recipes/librispeech
    python decode.py exp_dir=exp/l12 epoch=30 avg=9 decode=modified_beam_search
    python decode.py exp_dir=exp/l12 iter=120000 avg=4 decode=greedy
    python decode.py exp_dir=exp/l12 epoch=30 avg=9 use_averaged_model=true
    python decode.py exp_dir=exp/demo 'test_dirs=[download/demo/LibriSpeech/test-clean]'

Writes <exp_dir>/<method>/{recogs,errs,wer-summary}-<set>-<method>.txt for each test set and prints a WER table.
Configs: conf/decode.yaml and its group decode (greedy, beam_search, modified_beam_search).
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from asr.config import register_configs
from asr.data.config import DataConfig
from asr.data.loaders import AsrDataModule
from asr.data.tokenizer import Tokenizer
from asr.decode.config import DecodeConfig, check_search
from asr.decode.loading import load_model, resolve_device
from asr.decode.runner import decode_batches
from asr.lm.token_lm import load_fusion
from asr.metrics.wer import write_results

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
log = logging.getLogger("decode")


def data_config(cfg: DecodeConfig, train_config: dict) -> DataConfig:
    """The training run's data config with decoding's overrides."""
    data = OmegaConf.merge(OmegaConf.structured(DataConfig), train_config.get("data", {}))
    if cfg.manifest_dir:
        data.manifest_dir = cfg.manifest_dir
    if cfg.bpe_model:
        data.bpe_model = cfg.bpe_model
    if cfg.test_sets or cfg.test_dirs:  # test_dirs alone: only those
        data.test_sets = list(cfg.test_sets)
    data.max_duration = cfg.max_duration
    data.on_the_fly_feats = data.on_the_fly_feats or cfg.on_the_fly_feats
    return OmegaConf.to_object(data)


@hydra.main(config_path=str(CONF_DIR), config_name="decode", version_base="1.3")
def main(dict_cfg: DictConfig) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s [%(name)s] %(message)s", level=logging.INFO)
    cfg: DecodeConfig = OmegaConf.to_object(dict_cfg)
    check_search(cfg.decode)
    device = resolve_device(cfg.device)
    loaded = load_model(
        cfg.exp_dir,
        epoch=cfg.epoch,
        avg=cfg.avg,
        iteration=cfg.iter,
        use_averaged_model=cfg.use_averaged_model,
        checkpoint=cfg.checkpoint,
        device=device,
    )
    log.info("decoding with %s on %s, %s", loaded.description, device, cfg.decode)
    data = data_config(cfg, loaded.train_config)
    tokenizer = Tokenizer(data.bpe_model)
    if tokenizer.vocab_size != loaded.model.vocab_size:
        raise ValueError(f"{data.bpe_model} has {tokenizer.vocab_size} tokens, the model {loaded.model.vocab_size}")
    module = AsrDataModule(data, tokenizer)
    loaders = module.test_dataloaders()
    for folder in cfg.test_dirs:
        loaders[Path(folder).name] = module.test_dataloader_for(folder)
    if not loaders:
        raise FileNotFoundError(f"nothing to decode: no cuts for {data.test_sets} in {data.manifest_dir}, no test_dirs")

    method = cfg.decode.method
    fusion, fusion_name = load_fusion(cfg.decode.lm, cfg.decode.lm_scale, cfg.decode.lm_bonus, cfg.decode.lexicon,
                                      tokenizer, cfg.decode.word_lm, cfg.decode.word_lm_scale,
                                      cfg.decode.word_lm_bonus)
    setting = method if method == "greedy" else f"{method}_beam_{cfg.decode.beam}"
    if fusion is not None:  # results of shallow fusion go beside, not over, those without
        method = f"{method}_lm"
        setting += f"_{fusion_name}"
        log.info("shallow fusion: %s", fusion_name)
    setting += f"_{loaded.description}"
    out_dir = Path(cfg.exp_dir) / method
    rows = []
    for name, loader in loaders.items():
        decoded = decode_batches(
            loaded.model,
            loader,
            tokenizer,
            cfg.decode.method,
            beam=cfg.decode.beam,
            max_sym_per_frame=cfg.decode.max_sym_per_frame,
            device=device,
            fusion=fusion,
        )
        stats = write_results(out_dir, name, method, decoded.results, setting=setting)
        log.info("%s: WER %.2f%% (%d utterances), RTF %.4f", name, stats.wer, len(decoded.results), decoded.rtf)
        rows.append((name, stats, len(decoded.results), decoded.rtf))

    print(f"\n{setting}  (results in {out_dir})")
    print(f"{'test set':<20} {'WER %':>7} {'ins':>6} {'del':>6} {'sub':>6} {'words':>8} {'utts':>6} {'RTF':>8}")
    for name, s, n, rtf in rows:
        print(
            f"{name:<20} {s.wer:>7.2f} {s.insertions:>6} {s.deletions:>6} {s.substitutions:>6} "
            f"{s.ref_words:>8} {n:>6} {rtf:>8.4f}"
        )


if __name__ == "__main__":
    register_configs()
    main()
