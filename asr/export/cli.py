"""`asr-export`: a trained model to ONNX for sherpa-onnx (fp32, and int8 with --int8) and to TorchScript (--jit).

    asr-export --exp-dir exp/demo --epoch 0 --avg 1 --out exp/demo/onnx --int8 --jit
    asr-export --exp-dir exp/l12 --epoch 30 --avg 9 --use-averaged-model --out exp/l12/onnx
    asr-export --exp-dir exp/demo --checkpoint exp/demo/epoch-3.pt --out exp/demo/onnx

Writes OUT/encoder.onnx, decoder.onnx, joiner.onnx, tokens.txt (and *.int8.onnx, jit.pt), checks the directory as
sherpa-onnx will read it, and prints the files with their sizes. Exit status 2 when the model, checkpoint or BPE model
cannot be used (the message says which).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from asr.export.jit import export_jit
from asr.export.onnx import ExportError, copy_bpe_model, export_onnx

PROG = "asr-export"


def load_for_export(args: argparse.Namespace):
    """(Transducer, training config, description) chosen by the checkpoint flags, through the inference entry's
    loader (asr.decode.inference.load_model: checkpoint selection, averaging, safe loading)."""
    from asr.decode.inference import load_model

    loaded = load_model(args.exp_dir, args.epoch, args.avg, args.iter, args.use_averaged_model, args.checkpoint,
                        "cpu")  # fmt: skip
    return loaded.model, loaded.train_config, loaded.description


def bpe_model_path(arg: str, train_config: dict, exp_dir: Path) -> Path:
    """The BPE model by the inference entry's rule (asr.decode.inference.find_bpe_model). Raises ExportError."""
    from asr.decode.inference import find_bpe_model

    try:
        return find_bpe_model(arg, train_config, exp_dir)
    except FileNotFoundError as e:
        raise ExportError(f"{e} (--bpe-model)") from e


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, type=Path, help="experiment directory of a training run")
    p.add_argument("--epoch", type=int, default=0, help="last epoch of the average (0: the newest)")
    p.add_argument("--avg", type=int, default=1, help="epoch checkpoints averaged")
    p.add_argument("--iter", type=int, default=0, help="average checkpoint-N.pt with N <= ITER instead")
    p.add_argument("--use-averaged-model", action="store_true", help="use training's running average")
    p.add_argument("--checkpoint", default="", help="one checkpoint file (overrides --epoch/--avg/--iter)")
    p.add_argument("--bpe-model", default="", help="default: the training config's, found from the exp dir")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--int8", action="store_true", help="also *.int8.onnx (dynamic int8 quantization)")
    p.add_argument("--jit", action="store_true", help="also OUT/jit.pt (TorchScript)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.WARNING)
    try:
        model, train_config, desc = load_for_export(args)
        bpe = bpe_model_path(args.bpe_model, train_config, args.exp_dir)
        export_onnx(model, bpe, args.out, int8=args.int8, comment=f"{args.exp_dir.name} {desc}")
        copy_bpe_model(bpe, args.out)
        if args.jit:
            export_jit(model, bpe, args.out / "jit.pt")
    except (OSError, RuntimeError, ValueError, ExportError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    for f in sorted(args.out.iterdir()):
        print(f"{f}\t{f.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
