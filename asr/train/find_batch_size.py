"""The largest data.max_duration whose most demanding batches fit on this device, for this model and config.

    python -m asr.train.find_batch_size [--low S] [--high S] [--tolerance S] [--memory-limit-gb G] \
        [Hydra overrides as for training, e.g. experiment=demo data.manifest_dir=data/fbank model=conformer_l12]

It composes conf/train.yaml with the overrides as the training entry does (trainer.exp_dir is not needed), builds
the model and the training data, and bisects data.max_duration between --low and --high on the scan of
asr.train.memory_scan: at each value, forward and backward once on the epoch's most padded batch, the batch with the
longest cut and the one with the most cuts. A value fits when none runs out of memory and, with --memory-limit-gb,
none's peak exceeds the limit (on CPU the process's peak resident memory, on CUDA the memory torch allocated; the
module docstring of asr.train.memory_scan says what is counted). It prints the value found and the value to use, 10%
lower (batches the scan did not try, fragmentation over a long run); the last line reads `data.max_duration=N`.
Under torchrun each rank holds its own batches of max_duration: run this on one device of the kind training uses.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from asr.train.memory_scan import GIB, SAFETY_MARGIN, MemoryScan, bisect_max_duration, scan_of_data, seconds

log = logging.getLogger("asr.train")

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def find_max_duration(scan: MemoryScan, low: float, high: float, tolerance: float) -> float | None:
    """The largest max_duration in [low, high] (to `tolerance` seconds) whose scan fits; None when `low` does not."""
    return bisect_max_duration(scan.fits, low, high, tolerance)


def _build(overrides: list[str], memory_limit_bytes: int | None, config_dir: Path):
    """The MemoryScan of the composed config, and that config."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from asr.config import register_configs
    from asr.data.config import DataConfig
    from asr.data.loaders import AsrDataModule
    from asr.data.tokenizer import Tokenizer
    from asr.loss import set_backend
    from asr.loss.config import LossConfig
    from asr.models import ModelConfig, build_model
    from asr.train.distributed import pick_device
    from asr.train.resume import seed_everything
    from asr.train.step import resolve_amp

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    # trainer.exp_dir is MISSING here: only the sections the scan needs are made typed
    model_cfg: ModelConfig = OmegaConf.to_object(cfg.model)
    data_cfg: DataConfig = OmegaConf.to_object(cfg.data)
    loss_cfg: LossConfig = OmegaConf.to_object(cfg.loss)
    device = pick_device(cfg.trainer.device, 0)
    amp = resolve_amp(cfg.trainer.amp, device)
    set_backend(loss_cfg.backend)
    seed_everything(cfg.trainer.seed)
    tokenizer = Tokenizer(data_cfg.bpe_model)
    model = build_model(model_cfg).to(device)
    data = AsrDataModule(data_cfg, tokenizer, frames_fn=model.encoder.frames_fn)
    scan = scan_of_data(model, data, loss_cfg, device, amp, memory_limit_bytes=memory_limit_bytes)
    return scan, data_cfg, device, amp


def main(argv: list[str] | None = None) -> float | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--low", type=float, default=1.0, help="seconds: the smallest max_duration tried")
    p.add_argument("--high", type=float, default=0.0, help="seconds: the largest tried (default 2 x data.max_duration)")
    p.add_argument("--tolerance", type=float, default=0.0, help="seconds (default 2%% of --high, at least 1)")
    p.add_argument("--memory-limit-gb", type=float, default=0.0,
                   help="GiB a batch's peak must stay under (0: only an out-of-memory error fails)")
    p.add_argument("--config-dir", type=Path, default=CONF_DIR, help="the Hydra config directory (conf/)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml, as for training")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    limit = int(args.memory_limit_gb * GIB) if args.memory_limit_gb > 0 else None
    scan, data_cfg, device, amp = _build(args.overrides, limit, args.config_dir)
    high = args.high or 2 * data_cfg.max_duration
    if not 0 < args.low <= high:
        p.error(f"need 0 < --low <= --high, got {args.low} and {high}")
    tolerance = args.tolerance or max(1.0, 0.02 * high)
    where = f"{device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    where += f", precision {amp}" + (f", limit {args.memory_limit_gb:g} GiB" if limit else "")
    best = find_max_duration(scan, args.low, high, tolerance)
    if best is None:
        print(f"not even data.max_duration={args.low:g} fits on {where}: its batch of the longest cut "
              f"({scan.longest_cut:.1f} s) does not fit; lower data.max_cut_duration or the model's size")
        return None
    at_bound = " (the upper bound: raise --high to look further)" if best >= high else ""
    print(f"largest data.max_duration whose most demanding batches fit on {where}: {seconds(best)} s{at_bound}")
    print(f"suggested, {100 * (1 - SAFETY_MARGIN):.0f}% below for batches the scan did not try:")
    print(f"data.max_duration={seconds(SAFETY_MARGIN * best)}")
    return best


if __name__ == "__main__":
    main()
