"""The model's function is unchanged by speed work: losses and gradients equal a stored reference.

tests/fixtures/transducer_step_reference.json holds the per-utterance simple and pruned losses and every
parameter's gradient norm of one forward + backward of a small model of the default architecture (the
conformer_l12 code paths at d_model 64, two layers), computed with the code before the speed-ups of issue #24
(commit 256465a). The reference is regenerated from any checkout with

    PYTHONPATH=<checkout> .venv/bin/python tests/models/test_step_reference.py --write

(only when the model's function is meant to change).
"""

import json
import sys
from pathlib import Path

import torch

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "transducer_step_reference.json"


def compute() -> dict:
    """One forward + backward in float64 (so the comparison sees the formulation, not float32 rounding)."""
    from omegaconf import OmegaConf

    from asr.models import ModelConfig, build_model

    cfg = OmegaConf.structured(ModelConfig)
    cfg.vocab_size = 50
    cfg.encoder.update(d_model=64, num_heads=4, ff_dim=128, num_layers=2, dropout=0.0, subsampling_channels=0)
    cfg.decoder.decoder_dim = 64
    cfg.joiner.joiner_dim = 64
    torch.manual_seed(0)
    model = build_model(OmegaConf.to_object(cfg)).double().train()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 120, 80, generator=generator, dtype=torch.float64)
    x_lens = torch.tensor([120, 97, 64])
    y = torch.randint(1, 50, (3, 9), generator=generator)
    y_lens = torch.tensor([9, 6, 4])
    simple, pruned = model(x, x_lens, y, y_lens, prune_range=5, am_scale=0.0, lm_scale=0.25, reduction="none")
    (0.5 * simple.sum() + pruned.sum()).backward()
    return {"simple": simple.tolist(), "pruned": pruned.tolist(),
            "grad_norms": {name: float(p.grad.norm()) for name, p in model.named_parameters() if p.grad is not None}}


def test_losses_and_gradients_equal_the_reference():
    reference = json.loads(FIXTURE.read_text())
    now = compute()
    torch.testing.assert_close(torch.tensor(now["simple"]), torch.tensor(reference["simple"]), rtol=1e-9, atol=0)
    torch.testing.assert_close(torch.tensor(now["pruned"]), torch.tensor(reference["pruned"]), rtol=1e-9, atol=0)
    assert now["grad_norms"].keys() == reference["grad_norms"].keys()
    names = list(reference["grad_norms"])
    assert min(reference["grad_norms"].values()) > 0  # every parameter is reached, so each norm tests something
    torch.testing.assert_close(torch.tensor([now["grad_norms"][n] for n in names]),
                               torch.tensor([reference["grad_norms"][n] for n in names]), rtol=1e-8, atol=0)


if __name__ == "__main__" and "--write" in sys.argv:
    FIXTURE.write_text(json.dumps(compute(), indent=1) + "\n")
    print(f"wrote {FIXTURE}")
