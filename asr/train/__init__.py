"""asr.train: the training loop, distributed set-up, schedules, checkpoints and exact resume.

Entry: `asr.train.train(cfg)` with a composed conf/train.yaml (recipes/librispeech/train.py calls it); it runs as one
process or under torchrun (RANK / WORLD_SIZE / LOCAL_RANK; NCCL on CUDA, gloo on CPU; multi-node via rendezvous).

Modules (checkpoint files: asr.checkpoint; the device: asr.device):
    config        OptimConfig, TrainerConfig
    distributed   torchrun environment, process group, all-reduce helpers
    optim         Adam + Noam / Eden learning-rate schedules
    step          one batch's loss under autocast (a Batch in, delay penalty passed on), bad utterances dropped
    staging       the weights of the simple and pruned losses over warm_step ("switch", "ramp")
    trainer       the loop: DDP, AMP, one loss method for training and validation, clipping, logging
    state         TrainingState and what a checkpoint holds (incl. "precision"), saving, resume
    stopping      StoppingRules: num_epochs, max_steps, max_minutes (time budget), the schedule's total
    scaled_adam   ScaledAdam (icefall's optimiser; foreach and per-tensor paths)
    averaging     running model average (average_period)
    resume        RNG states (as tensors) and the sampler position
    progress      console lines with ETA, tensorboard, log files
    run           builds model, data, optimiser from the config and runs the Trainer
    init_from     fine-tuning: weights from another run (trainer.init_from, init_modules), freeze_modules
    preemption    PreemptionHandler: SIGTERM/SIGUSR1/SIGINT -> checkpoint after the batch, exit 75 (EXIT_PREEMPTED)
    rank_failure  exit_on_failure: a failing rank logs rank, batch, cut ids and exits at once (status 1)
    save_retry    SaveRetry: a failed checkpoint write (ENOSPC, EIO) is retried at the next save point, N in a row stop
    fp16_guard    GradScaleGuard: a collapsing fp16 grad scale -> inf/nan hooks, diagnostic checkpoint, stop
    oom           out-of-memory batches skipped on every rank together (no DDP: gradients all-reduced after backward)
    memory_scan   forward+backward on the most demanding batches before training; bisection for max_duration
    find_batch_size  `python -m asr.train.find_batch_size`: the largest data.max_duration that fits a device

Experiment directory (trainer.exp_dir; only rank 0 writes): the checkpoints checkpoint-{step}.pt and epoch-{E}.pt
and config.yaml, named and laid out as asr.checkpoint describes, and
    tensorboard/           events: train/{loss,simple_loss,pruned_loss} per frame, train/lr, train/grad_norm,
                           train/frames_per_s, valid/{loss,simple_loss,pruned_loss} per frame
    log/log-train-{time}.txt   the console log of each start
    init_from.json         fine-tuning only: the source of the initial weights and its training config
    bad-model-{step}.pt    fp16 only: the diagnostic checkpoint of a collapsing grad scale (never resumed from)

Resume: re-running the same command loads the readable checkpoint with the most batches trained (a truncated file
is skipped with a warning; a file refused as unsafe, one whose pickle would run code, stops the run with
asr.checkpoint.UnsafeCheckpointError) and continues mid-epoch with no batch repeated or skipped. Bit-identical on CPU, with or
without DataLoader workers: random augmentation is seeded per batch from (seed, epoch, rank, the batch's cut ids)
(asr.data.seeding.SeededBatches). Several nodes must see the same exp_dir (a shared file system), as in icefall;
ranks that resume from different places stop with an error. A checkpoint from N ranks resumed on M != N restarts
its epoch from the first batch, with a warning. A time budget (trainer.max_minutes) makes the batch count and the
cool-down depend on the machine's speed: such runs resume correctly but not bit-identically.

Losses: the model's per-utterance losses are summed over the batch; logged values are per encoder frame. Under DDP
the loss is scaled by the world size before backward, so gradients equal those of one process with the global batch.
"""

from asr.train.run import train

__all__ = ["train"]
