"""The library's training entry: builds everything a TrainConfig describes and runs the Trainer."""

import logging
import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from asr.train.allocator import keep_freed_memory
from asr.train.distributed import cleanup_distributed, setup_distributed
from asr.train.init_from import prepare_model
from asr.train.memory_scan import check_batches_fit, scan_of_data, scan_wanted
from asr.train.optim import build_optimizer
from asr.train.preemption import EXIT_PREEMPTED
from asr.train.progress import setup_logging
from asr.train.rank_failure import exit_on_failure
from asr.train.resume import seed_everything
from asr.train.trainer import Trainer

log = logging.getLogger("asr.train")


def save_config(cfg: DictConfig, path: Path) -> None:
    """Writes the resolved config as YAML (atomically)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    os.replace(tmp, path)


def train(cfg: DictConfig) -> dict[str, float]:
    """Trains the model of `cfg` (a composed conf/train.yaml, schema asr.config.TrainConfig).

    Runs as one process, or under torchrun (one process per device, any number of nodes).
    Returns the last logged training statistics. Stopped by SIGTERM, SIGUSR1 or SIGINT (trainer.graceful_signals)
    after its checkpoint, it exits with status 75 (asr.train.preemption.EXIT_PREEMPTED); a rank that fails in a
    distributed job logs where and exits with status 1 at once (asr.train.rank_failure).
    """
    from asr.data.loaders import AsrDataModule
    from asr.data.tokenizer import Tokenizer
    from asr.loss import set_backend
    from asr.models import build_model

    obj = OmegaConf.to_object(cfg)  # typed dataclasses; raises on MISSING or mistyped fields
    tcfg = obj.trainer
    if tcfg.keep_freed_memory:
        keep_freed_memory()  # CPU steps reuse their pages instead of page-faulting them afresh (asr.train.allocator)
    dist = setup_distributed(tcfg.device, timeout_s=tcfg.collective_timeout_s)
    exp_dir = Path(tcfg.exp_dir)
    if dist.is_main:
        exp_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, exp_dir / "config.yaml")
    setup_logging(exp_dir / "log", dist.rank)
    log.info("world size %d, device %s, exp dir %s", dist.world_size, dist.device, exp_dir)
    if tcfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    set_backend(obj.loss.backend)

    tokenizer = Tokenizer(obj.data.bpe_model)
    if tokenizer.vocab_size != obj.model.vocab_size or tokenizer.blank_id != obj.model.blank_id:
        raise ValueError(
            f"model.vocab_size={obj.model.vocab_size}, model.blank_id={obj.model.blank_id} but the BPE model "
            f"{obj.data.bpe_model} has {tokenizer.vocab_size} pieces and blank id {tokenizer.blank_id}"
        )
    seed_everything(tcfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = build_model(obj.model).to(dist.device)
    log.info("model: %d parameters", sum(p.numel() for p in model.parameters()))
    # fine-tuning: weights from trainer.init_from (unless resuming), trainer.freeze_modules left out of the optimiser
    init_record = prepare_model(model, tcfg, OmegaConf.to_container(cfg.model, resolve=True), obj.data.bpe_model,
                                is_main=dist.is_main)  # fmt: skip
    seed_everything(tcfg.seed + dist.rank)  # different dropout masks on each rank
    optimizer, schedule = build_optimizer(model, obj.optim)

    # the filter of utterances with more tokens than encoder frames counts the model's frames (picklable callable)
    data = AsrDataModule(obj.data, tokenizer, frames_fn=model.encoder.frames_fn)

    def make_train_loader(sampler_state):
        return data.train_dataloader(
            rank=dist.rank, world_size=dist.world_size, sampler_state=sampler_state, seed=tcfg.seed
        )

    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        cfg=tcfg,
        loss=obj.loss,
        dist=dist,
        make_train_loader=make_train_loader,
        valid_loader=data.valid_dataloader(rank=dist.rank, world_size=dist.world_size),
        clip_grad_norm=obj.optim.clip_grad_norm,
        config={**OmegaConf.to_container(cfg, resolve=True), **({"init_from": init_record} if init_record else {})},
    )

    def scan_then_fit() -> dict[str, float]:
        if scan_wanted(tcfg.scan_oom, dist.device):  # asr.train.memory_scan: fail now rather than hours later
            scan = scan_of_data(model, data, obj.loss, dist.device, trainer.amp, optimizer=optimizer)
            check_batches_fit(scan, obj.data.max_duration)
        return trainer.fit()

    try:
        stats = exit_on_failure(scan_then_fit, dist, trainer.where)  # a distributed rank that fails exits here
    finally:
        cleanup_distributed()
    if trainer.stopped_by is not None:
        raise SystemExit(EXIT_PREEMPTED)
    return stats
