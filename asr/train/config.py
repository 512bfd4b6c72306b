"""Structured configs of the optimiser, its learning-rate schedule and the training loop."""

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class OptimConfig:
    # "adam": torch's Adam (icefall's pruned_transducer_stateless); "scaled_adam": icefall's ScaledAdam
    # (asr.train.scaled_adam: updates relative to each tensor's RMS, learnt scales, clipping by the median of
    # recent gradient norms), used with the Eden schedule and clip_grad_norm 0 (conf/optim/scaled_adam.yaml).
    optimizer: str = "adam"
    # Adam's moments: icefall's pruned_transducer_stateless uses (0.9, 0.98), as the Transformer paper.
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    # Adam's epsilon: 1e-9 as icefall's Noam optimiser (the sum-reduced loss makes gradients large).
    eps: float = 1e-9
    weight_decay: float = 0.0
    # Adam only: torch's fused kernel (one pass per tensor; the same update to float rounding). null: fused where
    # every parameter's device supports it (CPU, CUDA); false: torch's per-tensor loop, as before fused was the
    # default (needed only to replay an older run's rounding exactly).
    fused_adam: bool | None = None
    # "noam": warm-up then 1/sqrt(step) decay (icefall's pruned_transducer_stateless);
    # "eden": decay in both batches and epochs (icefall's later recipes).
    schedule: str = "noam"
    # Noam: lr = lr_factor * model_size^-0.5 * min(step^-0.5, step * warm_step^-1.5).
    # lr_factor 5 and warm_step 80000 are icefall's values for 960 h of LibriSpeech.
    lr_factor: float = 5.0
    warm_step: int = 80000
    # The attention dim of the encoder (Noam's d_model); the YAML interpolates it from the model config.
    model_size: int = 512
    # Eden: lr = base_lr * ((b^2 + lr_batches^2) / lr_batches^2)^-0.25 * ((e^2 + lr_epochs^2) / lr_epochs^2)^-0.25,
    # with a linear warm-up from 0.5 * lr over warmup_batches; icefall's pruned_transducer_stateless7 values.
    base_lr: float = 0.003
    lr_batches: float = 5000.0
    lr_epochs: float = 6.0
    warmup_batches: float = 500.0
    # Either schedule: the last cooldown_fraction of training decays the rate linearly to 0, for a fixed budget:
    # in batches (trainer.max_steps, or num_epochs once the first epoch has given its length), or in time
    # (trainer.max_minutes), whichever ends first. 0: off (icefall).
    cooldown_fraction: float = 0.0
    # Gradient clipping (global L2 norm) on the gradient of the loss summed over the global batch; icefall clips
    # pruned_transducer_stateless at 5. 0 disables clipping.
    clip_grad_norm: float = 5.0
    # ScaledAdam only (icefall's defaults): clip the RMS-weighted gradient norm to clipping_scale x the median of
    # the last clipping_update_period batches' norms; scalars learn at lr x scalar_lr_scale and stay within
    # +-scalar_max; each tensor's RMS (its learnt scale) is kept within [param_min_rms, param_max_rms] and
    # updated every size_update_period steps.
    clipping_scale: float = 2.0
    clipping_update_period: int = 100
    scalar_lr_scale: float = 0.1
    scalar_max: float = 10.0
    param_min_rms: float = 1.0e-5
    param_max_rms: float = 3.0
    size_update_period: int = 4


@dataclass
class TrainerConfig:
    # Experiment directory: checkpoints, tensorboard, logs, config.yaml (layout in asr/train/__init__.py).
    exp_dir: str = MISSING
    # Epochs to train (1-based numbering in file names); icefall trains its 960 h conformer models for 30.
    num_epochs: int = 30
    # Stop after this many batches in all (0: no limit): the run validates and ends mid-epoch with that epoch's
    # epoch-E.pt (what decoding picks), from which a longer run resumes bit-identically.
    max_steps: int = 0
    # Stop once training has taken this many minutes of wall time in all (resumed runs add up; 0: no limit), as
    # fairseq's --stop-time-hours or Lightning's max_time. The run then ends mid-epoch with that epoch's
    # epoch-E.pt, and the lr cool-down (optim.cooldown_fraction) follows the time spent. The number of batches then
    # depends on the machine's speed, so two runs (or a run and its resume) are not bit-identical.
    max_minutes: float = 0.0
    # Seed of every random generator (model init, dropout, sampler shuffling).
    seed: int = 42
    # "auto" picks cuda when available; "cpu" or "cuda" force it.
    device: str = "auto"
    # Mixed precision: "none" (float32), "fp16" (CUDA only, with a GradScaler), "bf16", or "auto": bf16 where the
    # device runs it natively (CUDA with bf16; CPUs with AVX512-BF16 or AMX, where a training step takes 0.7x the
    # float32 time), else fp16 on CUDA and none on CPU. Losses stay float32.
    amp: str = "none"
    # Console and tensorboard logging period, in batches.
    log_interval: int = 50
    # Validation period in batches (0: only at each epoch end); icefall validates every 3000 batches.
    valid_interval: int = 3000
    # Checkpoint period in batches (checkpoint-{step}.pt); 0 disables them (epoch-{E}.pt are always written).
    save_every_n: int = 4000
    # How many checkpoint-{step}.pt files to keep (epoch files are all kept, decoding averages them).
    keep_last_k: int = 20
    # Period of the running model average in batches (icefall's average_period); 0 disables it.
    average_period: int = 200
    # Deterministic kernels (torch.use_deterministic_algorithms); needed for bit-exact resume on GPU.
    deterministic: bool = False
    # Write tensorboard events under exp_dir/tensorboard.
    tensorboard: bool = True
    # DDP's find_unused_parameters: the transducer uses every parameter, so False is right and faster.
    find_unused_parameters: bool = False
    # ---- fine-tuning (asr.train.init_from) ----
    # Start from another run's weights: a checkpoint file, or an experiment directory from which init_epoch /
    # init_avg / init_iter / init_use_averaged_model choose and average as decoding's epoch / avg / iter /
    # use_averaged_model do (0, 1, 0, false: its newest epoch-E.pt). Weights only: the optimiser, the schedule and
    # the step count start afresh (icefall's finetune.py --finetune-ckpt). Ignored (logged) once exp_dir holds a
    # checkpoint: the run then resumes from its own. Empty: random initial weights.
    init_from: str = ""
    init_epoch: int = 0
    init_avg: int = 1
    init_iter: int = 0
    init_use_averaged_model: bool = False
    # The modules taken from init_from (empty: the whole model), as icefall's --init-modules: encoder, decoder,
    # joiner, simple_am_proj, simple_lm_proj, or dotted names inside them (encoder.layers.0). [encoder] serves a
    # new vocabulary: the decoder, joiner and simple-loss projections keep their fresh random weights.
    init_modules: list[str] = field(default_factory=list)
    # Modules trained no further (no gradients, left out of the optimiser, run in eval mode so dropout is off and
    # BatchNorm keeps its statistics): e.g. [encoder] to adapt only decoder and joiner to new text on little data.
    freeze_modules: list[str] = field(default_factory=list)
    # ---- reliability (asr.train.preemption, rank_failure, save_retry, fp16_guard) ----
    # SIGTERM, SIGUSR1 and SIGINT finish the batch in progress on every rank, write checkpoint-{step}.pt and exit
    # with status 75 (a scheduler's grace period: SLURM, Kubernetes, torchrun's 30 s); false: they kill at once.
    graceful_signals: bool = True
    # The process group's timeout, in seconds: the longest a rank waits for the others in one collective, hence
    # the bound on how long the job lingers after a rank hangs. It must exceed the longest wait of a healthy run:
    # the other ranks wait at a barrier while rank 0 writes a checkpoint (conformer_l12 with Adam: 1.6 GiB, 2 to 9 s
    # on a local disk, tens of seconds on a slow network file system) and validates. 300 s instead of NCCL's 10
    # to 30 minutes; a rank that raises exits at once anyway (its peers' collectives then fail at once on gloo).
    collective_timeout_s: float = 300.0
    # Stop after this many consecutive checkpoint writes failed with an OSError (ENOSPC, EIO): 3 save points give
    # someone time to free space, while a run that cannot save stops before it piles up much unsaved work.
    max_save_failures: int = 3
    # fp16 guard (trainer.amp=fp16 only), icefall's thresholds: a grad scale below fp16_warn_scale logs which
    # modules produce inf/nan and writes one diagnostic checkpoint (bad-model-{step}.pt); below fp16_stop_scale
    # the run has diverged and stops. Every fp16_grow_period batches a scale below fp16_grow_below is doubled
    # (GradScaler alone waits 2000 clean batches). 0 turns each off.
    fp16_warn_scale: float = 0.01
    fp16_stop_scale: float = 1.0e-5
    fp16_grow_period: int = 100
    fp16_grow_below: float = 8.0
    # ---- batches that fit (asr.train.oom, asr.train.memory_scan) ----
    # An out-of-memory error in a batch's forward or backward drops that batch on every rank (logged with its cut
    # ids and sizes, counted) and training goes on. Under DDP the gradient all-reduce then follows backward instead
    # of overlapping it (asr.train.oom: a few ms per batch on one node); false keeps DDP's overlap and an
    # out-of-memory error ends the run, naming the batch (icefall's behaviour).
    skip_oom_batches: bool = True
    # CPU training keeps freed memory in the process's heap (asr.train.allocator): no page faults on each step's
    # activations (conformer_l12 at 8 x 10 s: 0.8-1.3 M faults and seconds of system time per step without it); the
    # heap keeps its fragments too, so the resident high-water can sit a few % above glibc's default at equal live
    # memory (RSS is 1.7-1.8x the live peak either way; bench/RESULTS_train_step.md). false: glibc's defaults, for
    # hosts short of memory.
    keep_freed_memory: bool = True
    # Stop once more batches than this ran out of memory (0: no limit): a few rare outliers are worth skipping,
    # dozens mean data.max_duration is too large for the device and the run would train on a biased subset.
    max_oom_skips: int = 20
    # Before training, forward and backward once on the most demanding batches (the longest cuts, the most padded
    # and the most numerous at data.max_duration), report peak memory, and fail at once, naming the batch and the
    # largest max_duration that fits, if one runs out of memory (icefall's scan_pessimistic_batches_for_oom).
    # null: on CUDA only, where it takes seconds and saves hours; on CPU a large batch takes minutes and host
    # memory rarely runs out.
    scan_oom: bool | None = None
