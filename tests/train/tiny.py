"""A tiny training set-up for the tests of asr.train: a small real Transducer, synthetic cuts, a lhotse sampler.

Also a script, run by the tests as a subprocess from the repository root (alone, or under torchrun with -m):
    python -m tests.train.tiny --exp-dir DIR [--loader lhotse|fixed] [--epochs N] [--kill-at K] ...
With --kill-at K it SIGKILLs itself as it starts training batch K (1-based over the run), as `kill -9` would.
With --signal-at K it sends itself --signal (TERM, USR1 or INT) as it starts batch K (on rank --signal-rank), and with
--signal-during-save a second SIGTERM while the checkpoint is written; it then exits with status 75 after that
batch's checkpoint. With --raise-at K rank --raise-rank raises there (on torchrun's first attempt only). With
--oom-at K batch K runs out of memory (--oom-in forward or backward) on rank --oom-rank (-1: all).
At the end it writes DIR/params-rank{R}.pt (the final parameters) and DIR/stats-rank{R}.pt (last logged stats).
"""

import argparse
import os
import signal
from pathlib import Path

import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler
from lhotse.testing.dummies import dummy_cut

from asr.data.batch import Batch
from asr.data.seeding import SeededBatches
from asr.loss.config import LossConfig
from asr.models import ModelConfig, build_model, subsampled_lengths
from asr.models.conformer import ConformerConfig
from asr.models.decoder import DecoderConfig
from asr.models.joiner import JoinerConfig
from asr.train.config import OptimConfig, TrainerConfig

NUM_FEATURES = 8
VOCAB = 8
FRAMES_PER_SECOND = 100


def tiny_model_config(dropout: float = 0.1) -> ModelConfig:
    return ModelConfig(
        vocab_size=VOCAB,
        blank_id=0,
        encoder=ConformerConfig(
            num_features=NUM_FEATURES, d_model=16, num_heads=2, ff_dim=32, num_layers=1, cnn_kernel=3, dropout=dropout
        ),
        decoder=DecoderConfig(decoder_dim=16, context_size=2),
        joiner=JoinerConfig(joiner_dim=16),
    )


class _NoNorm(torch.nn.Module):
    def forward(self, x, *args):
        return x


def tiny_model(dropout: float = 0.1, seed: int = 0, batchnorm: bool = True) -> torch.nn.Module:
    """The tiny Transducer; batchnorm=False swaps BatchNorm for identity, whose batch statistics would make a
    rank's half batch normalise differently from the whole batch of one process."""
    torch.manual_seed(seed)
    model = build_model(tiny_model_config(dropout))
    if not batchnorm:
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
                    setattr(module, name, _NoNorm())
    return model


def make_cuts(n: int = 24) -> CutSet:
    """n cuts of 0.3 to 0.65 s (30 to 65 frames, 6 to 15 encoder frames)."""
    return CutSet.from_cuts(dummy_cut(i, duration=0.3 + 0.05 * (i % 8)) for i in range(n))


def cut_index(cut_id: str) -> int:
    return int(cut_id.rsplit("-", 1)[-1])


class SyntheticDataset(torch.utils.data.Dataset):
    """CutSet -> Batch with features and tokens that are a function of the cut id.

    A random gain per batch is drawn from the global torch generator, like SpecAugment in the main process, so
    resume must restore that generator. `nan_ids` get a NaN feature; `long_ids` get more tokens than frames.
    """

    def __init__(self, nan_ids: frozenset[int] = frozenset(), long_ids: frozenset[int] = frozenset()):
        self.nan_ids, self.long_ids = nan_ids, long_ids

    def __getitem__(self, cuts: CutSet) -> Batch:
        feats, tokens, ids = [], [], []
        for c in cuts:
            i = cut_index(c.id)
            g = torch.Generator().manual_seed(i)
            T = round(c.duration * FRAMES_PER_SECOND)
            x = torch.randn(T, NUM_FEATURES, generator=g)  # (T, F)
            if i in self.nan_ids:
                x[T // 2, 0] = float("nan")
            U = int(subsampled_lengths(torch.tensor([T]))[0]) + 3 if i in self.long_ids else 1 + i % 4
            tokens.append(torch.randint(1, VOCAB, (U,), generator=g))
            feats.append(x)
            ids.append(c.id)
        gain = 1.0 + 0.1 * torch.rand(1)  # global generator
        x_lens = torch.tensor([f.size(0) for f in feats])
        x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True) * gain  # (B, T, F)
        y_lens = torch.tensor([t.numel() for t in tokens])
        y = torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True)  # (B, U)
        return Batch(features=x, feature_lens=x_lens, tokens=y, token_lens=y_lens, cut_ids=ids, texts=[""] * len(ids))


def lhotse_loader_factory(cuts: CutSet, rank: int, world_size: int, seed: int, max_duration: float = 1.5,
                          num_workers: int = 0):
    """make_train_loader for the Trainer: a real DynamicBucketingSampler (shuffled, sharded) in a DataLoader.
    With workers the batches' random gain is seeded per batch (SeededBatches), as the real loaders do."""

    def make(sampler_state: dict | None):
        sampler = DynamicBucketingSampler(
            cuts, max_duration=max_duration, num_buckets=2, shuffle=True, seed=seed, rank=rank,
            world_size=world_size, buffer_size=100,
        )  # fmt: skip
        if sampler_state is not None:
            sampler.load_state_dict(sampler_state)
        dataset = SyntheticDataset() if num_workers == 0 else SeededBatches(SyntheticDataset(), seed)
        return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers)

    return make


def fixed_batches(
    cuts: CutSet, rank: int, world_size: int, global_batch: int = 4, ds: SyntheticDataset | None = None
) -> list[Batch]:
    """The cuts in fixed global batches of `global_batch`; rank r gets every world_size-th cut of each."""
    all_cuts = list(cuts)
    ds = ds or SyntheticDataset()
    out = []
    for start in range(0, len(all_cuts) - global_batch + 1, global_batch):
        mine = all_cuts[start : start + global_batch][rank::world_size]
        torch.manual_seed(start)  # the same gain for the whole global batch on every rank
        out.append(ds[CutSet.from_cuts(mine)])
    return out


def counting(trainer, calls: list) -> None:
    """Makes `trainer` append each batch it trains on to `calls`."""
    step = trainer.train_step

    def counted(batch: Batch):
        calls.append(batch)
        return step(batch)

    trainer.train_step = counted


def make_trainer(exp_dir, batches: list[Batch], calls: list | None = None, loss: LossConfig | None = None,
                 **trainer_overrides):
    """An in-process single-CPU Trainer over a fixed list of batches; `calls` collects the batches it trains on."""
    from asr.train.distributed import DistInfo
    from asr.train.optim import build_optimizer
    from asr.train.trainer import Trainer

    model = tiny_model(0.0, seed=1)
    optimizer, schedule = build_optimizer(model, OptimConfig(model_size=16, warm_step=100))
    fields = dict(exp_dir=str(exp_dir), num_epochs=1, device="cpu", log_interval=1, valid_interval=0,
                  save_every_n=1, keep_last_k=5, average_period=0, tensorboard=False)  # fmt: skip
    fields.update(trainer_overrides)
    trainer = Trainer(
        model=model, optimizer=optimizer, schedule=schedule, cfg=TrainerConfig(**fields),
        loss=loss or LossConfig(prune_range=3, warm_step=2), dist=DistInfo(0, 1, 0, torch.device("cpu")),
        make_train_loader=lambda state: batches, valid_loader=None, clip_grad_norm=5.0, config={},
    )  # fmt: skip
    if calls is not None:
        counting(trainer, calls)
    return trainer


CPU_OOM_MESSAGE = ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                   "to allocate 123456789 bytes. Error code 12 (Cannot allocate memory)")


def inject_oom(trainer, at: set[int], phase: str = "forward", ranks: set[int] | None = None) -> list[int]:
    """Makes training batches `at` (1-based over all runs: batch_idx_train + 1) run out of memory on `ranks` (None:
    every rank): in "forward" (the CPU allocator's RuntimeError, raised as the loss is computed) or half-way
    through "backward" (torch.OutOfMemoryError from the gradient hook of the model's first parameter, reached
    after most gradients are accumulated). Returns the list the injected batch numbers are appended to."""
    rank = trainer.dist.rank
    injected: list[int] = []
    batch_loss = trainer.batch_loss
    first_param = next(trainer.raw_model.parameters())

    def failing(model, batch: Batch):
        k = trainer.state.batch_idx_train + 1
        armed = model.training and k in at and (ranks is None or rank in ranks)
        if armed and phase == "forward":
            injected.append(k)
            raise RuntimeError(CPU_OOM_MESSAGE)
        res = batch_loss(model, batch)
        if armed and phase == "backward":
            injected.append(k)

            def fail(grad):
                handle.remove()
                raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (injected, batch {k})")

            handle = first_param.register_hook(fail)
        return res

    trainer.batch_loss = failing
    return injected


def _inject_faults(trainer, args, rank: int, trained: list) -> None:
    """--signal-at, --signal-during-save, --raise-at: wraps trainer.train_step (and the checkpoint write)."""
    step = trainer.train_step

    def faulty(batch: Batch):
        k = len(trained) + 1  # the batch starting now, 1-based over this run
        if args.signal_at and k == args.signal_at and rank == args.signal_rank:
            os.kill(os.getpid(), getattr(signal, f"SIG{args.signal}"))
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if args.raise_at and k == args.raise_at and rank == args.raise_rank and first_attempt:
            raise RuntimeError(f"injected failure at batch {k}")
        return step(batch)

    trainer.train_step = faulty
    if args.oom_at:
        inject_oom(trainer, {args.oom_at}, args.oom_in, None if args.oom_rank < 0 else {args.oom_rank})
    if args.signal_during_save:
        import asr.checkpoint

        write = asr.checkpoint.torch.save

        def save_and_signal(obj, f, *a, **kw):  # a signal while the checkpoint is being written
            if trainer.preemption is not None and trainer.preemption.signalled:
                os.kill(os.getpid(), signal.SIGTERM)
            return write(obj, f, *a, **kw)

        asr.checkpoint.torch = _TorchWith(save=save_and_signal)


class _TorchWith:
    """torch, with some attributes replaced (for asr.checkpoint's module-level `torch`)."""

    def __init__(self, **replaced):
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(torch, name)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--loader", choices=["lhotse", "fixed"], default="lhotse")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--save-every-n", type=int, default=3)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--kill-at", type=int, default=0)
    p.add_argument("--schedule", default="noam")
    p.add_argument("--no-batchnorm", action="store_true")
    p.add_argument("--nan-ids", default="", help="comma-separated cut indexes given a NaN feature")
    p.add_argument("--warm-step", type=int, default=10)
    p.add_argument("--cooldown-fraction", type=float, default=0.5)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--signal-at", type=int, default=0)
    p.add_argument("--signal", choices=["TERM", "USR1", "INT"], default="TERM")
    p.add_argument("--signal-rank", type=int, default=0)
    p.add_argument("--signal-during-save", action="store_true")
    p.add_argument("--raise-at", type=int, default=0)
    p.add_argument("--raise-rank", type=int, default=0)
    p.add_argument("--collective-timeout", type=float, default=0.0)
    p.add_argument("--oom-at", type=int, default=0, help="this batch (batch_idx_train + 1) runs out of memory")
    p.add_argument("--oom-rank", type=int, default=-1, help="on this rank only (-1: every rank)")
    p.add_argument("--oom-in", choices=["forward", "backward"], default="forward")
    p.add_argument("--no-fused-adam", action="store_true", help="optim.fused_adam=false (the old per-tensor Adam)")
    p.add_argument("--no-skip-oom", action="store_true", help="trainer.skip_oom_batches=false (DDP's overlap)")
    args = p.parse_args()

    from asr.train.distributed import cleanup_distributed, setup_distributed
    from asr.train.optim import build_optimizer
    from asr.train.preemption import EXIT_PREEMPTED
    from asr.train.progress import setup_logging
    from asr.train.rank_failure import exit_on_failure
    from asr.train.resume import seed_everything
    from asr.train.trainer import Trainer

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    dist = setup_distributed("cpu", timeout_s=args.collective_timeout)
    setup_logging(Path(args.exp_dir) / "log", dist.rank)
    seed = 7
    model = tiny_model(args.dropout, seed, batchnorm=not args.no_batchnorm)
    seed_everything(seed + dist.rank)
    optim_cfg = OptimConfig(schedule=args.schedule, model_size=16, lr_factor=5.0, warm_step=args.warm_step,
                            cooldown_fraction=args.cooldown_fraction, fused_adam=False if args.no_fused_adam else None)
    optimizer, schedule = build_optimizer(model, optim_cfg)
    tcfg = TrainerConfig(
        exp_dir=args.exp_dir, num_epochs=args.epochs, seed=seed, device="cpu", log_interval=2, valid_interval=0,
        save_every_n=args.save_every_n, keep_last_k=2, average_period=2, tensorboard=True,
        skip_oom_batches=not args.no_skip_oom,
    )  # fmt: skip
    cuts = make_cuts()
    if args.loader == "lhotse":
        make_loader = lhotse_loader_factory(cuts, dist.rank, dist.world_size, seed, num_workers=args.num_workers)
    else:
        nan_ids = frozenset(int(i) for i in args.nan_ids.split(",") if i)
        batches = fixed_batches(cuts, dist.rank, dist.world_size, ds=SyntheticDataset(nan_ids=nan_ids))
        make_loader = lambda state: batches  # noqa: E731

    valid = fixed_batches(make_cuts(8), dist.rank, dist.world_size, global_batch=4)
    trainer = Trainer(
        model=model, optimizer=optimizer, schedule=schedule, cfg=tcfg,
        loss=LossConfig(prune_range=3, schedule="ramp", warm_step=4), dist=dist, make_train_loader=make_loader,
        valid_loader=valid, clip_grad_norm=5.0, config={"test": True},
    )  # fmt: skip
    trained: list = []
    counting(trainer, trained)
    if args.kill_at:
        step = trainer.train_step

        def kill_at(batch: Batch):
            if len(trained) + 1 == args.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(batch)

        trainer.train_step = kill_at
    _inject_faults(trainer, args, dist.rank, trained)
    stats = exit_on_failure(trainer.fit, dist, trainer.where)
    if trainer.stopped_by is not None:
        cleanup_distributed()
        raise SystemExit(EXIT_PREEMPTED)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    torch.save(params, Path(args.exp_dir) / f"params-rank{dist.rank}.pt")
    torch.save({"stats": stats, "counters": trainer.state.counters, "batches": trainer.state.batch_idx_train},
               Path(args.exp_dir) / f"stats-rank{dist.rank}.pt")  # fmt: skip
    cleanup_distributed()


if __name__ == "__main__":
    main()
