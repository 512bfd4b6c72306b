"""Prints the parameter count of each model YAML: `python -m asr.models [conf/model/*.yaml ...]`."""

import sys
from pathlib import Path

from omegaconf import OmegaConf

from asr.models.transducer import ModelConfig, build_model

_DEFAULT_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or sorted(_DEFAULT_DIR.glob("*.yaml"))
    print(f"| {'config':<20} | {'parameters':>12} | {'encoder':>12} |")
    print(f"|{'-' * 22}|{'-' * 14}|{'-' * 14}|")
    for path in paths:
        model = build_model(OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path)))
        total = sum(p.numel() for p in model.parameters())
        encoder = sum(p.numel() for p in model.encoder.parameters())
        print(f"| {path.stem:<20} | {total:>12,} | {encoder:>12,} |")


if __name__ == "__main__":
    main(sys.argv[1:])
