"""Step 3 of the GPU check: a conformer_l12 training step in bf16 and in fp16 at icefall's batch size.

One step = the transducer's forward (simple + pruned loss: 0.5 * simple + pruned, prune range 5, lm_scale 0.25,
am_scale 0), backward and an Adam step, under autocast; fp16 goes through torch.amp.GradScaler as the trainer does
(scale, unscale_, clip, step, update). The batch: utterances of similar length (a bucketing sampler's) filling
`max_duration` seconds (icefall: 300 s). FLOPs of one forward + backward are counted by
torch.utils.flop_counter.FlopCounterMode (matmuls, convolutions, attention); FLOP/s is that over the median step
time, set against the bf16 peak of a large matmul measured in the same run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.gpu import workload

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


def build(model_name: str, device: torch.device, overrides: dict | None = None) -> torch.nn.Module:
    """The model of conf/model/<model_name>.yaml (dropout 0, so steps are comparable), with encoder overrides."""
    import yaml

    from asr.models import ModelConfig, build_model
    from asr.models.conformer import ConformerConfig
    from asr.models.decoder import DecoderConfig
    from asr.models.joiner import JoinerConfig

    raw = yaml.safe_load((CONF / f"{model_name}.yaml").read_text())
    encoder = {**raw["encoder"], "dropout": 0.0, **(overrides or {})}
    cfg = ModelConfig(vocab_size=raw["vocab_size"], blank_id=raw["blank_id"], encoder=ConformerConfig(**encoder),
                      decoder=DecoderConfig(**raw["decoder"]), joiner=JoinerConfig(**raw["joiner"]))
    return build_model(cfg).to(device)


def loss_of(model, batch) -> torch.Tensor:
    x, x_lens, y, y_lens = batch
    simple, pruned = model(x, x_lens, y, y_lens, prune_range=5, am_scale=0.0, lm_scale=0.25)
    return 0.5 * simple + pruned


def run(device: torch.device, profile: dict, emit) -> None:
    """Emits the measured matmul peak, then one row per precision."""
    from torch.utils.flop_counter import FlopCounterMode

    n = profile["matmul_n"]
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = workload.matmul_peak_tflops(device, n, peak_dtype)
    emit({"what": f"matmul peak ({n}x{n}, {str(peak_dtype).removeprefix('torch.')})", "tflops": peak,
          "status": "ok"})  # fmt: skip

    model = build(profile["train_model"], device, profile.get("train_overrides"))
    params = sum(p.numel() for p in model.parameters())
    pool = workload.utterance_pool(profile["pool"], seed=2, scale=profile["scale"])
    start = int(0.7 * len(pool))  # the long end of the pool: the worst case for memory
    utts = workload.duration_batch(pool, profile["train_max_seconds"], start=start)
    batch = workload.feature_batch(utts, model.vocab_size, device, seed=3)
    seconds = sum(u.seconds for u in utts)

    precisions = ["bf16", "fp16"] if device.type == "cuda" else ["bf16"]
    for amp in precisions:
        row = {"what": f"{profile['train_model']} step, {amp} autocast", "amp": amp, "parameters": params,
               "utterances": len(utts), "audio_s": seconds, "max_frames": int(batch[1].max())}  # fmt: skip
        try:
            dtype = torch.bfloat16 if amp == "bf16" else torch.float16
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
            scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
            skipped = []

            def step(i: int) -> None:
                with torch.autocast(device.type, dtype=dtype):
                    loss = loss_of(model, batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                scale_before = scaler.get_scale() if scaler.is_enabled() else 1.0
                scaler.step(optimizer)
                scaler.update()
                if scaler.is_enabled() and scaler.get_scale() < scale_before:
                    skipped.append(i)
                row["loss"] = float(loss)

            workload.reset_peak(device)
            row.update(workload.time_steps(step, device, profile["train_warmup"], profile["train_steps"]))
            row["peak_mem_gb"] = workload.peak_gb(device)
            with FlopCounterMode(display=False) as counter, torch.autocast(device.type, dtype=dtype):
                loss_of(model, batch).backward()
            optimizer.zero_grad(set_to_none=True)
            flops = counter.get_total_flops()
            row["gflop_per_step"] = flops / 1e9
            row["tflops"] = flops / (row["median_ms"] / 1e3) / 1e12
            row["fraction_of_matmul_peak"] = row["tflops"] / peak
            row["fp16_overflow_skips"] = len(skipped)
            row["status"] = "ok" if torch.isfinite(torch.tensor(row["loss"])) else "failed"
            if row["status"] == "failed":
                row["error"] = "non-finite loss"
            del optimizer
        except Exception as e:
            row.update(status="failed", error=f"{type(e).__name__}: {str(e)[:300]}")
        emit(row)
