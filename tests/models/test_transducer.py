"""Transducer: loss shapes and dtypes, oracles on the full lattice, masking, overfitting, the model YAMLs."""

import time
from pathlib import Path

import pytest
import torch
import torchaudio
from omegaconf import OmegaConf

from asr.models import ConformerConfig, DecoderConfig, JoinerConfig, ModelConfig, Transducer, build_model

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"
F, V = 20, 12
LOSS_ARGS = dict(prune_range=3, am_scale=0.0, lm_scale=0.25)


def tiny_model(dropout: float = 0.0) -> Transducer:
    cfg = ModelConfig(
        vocab_size=V,
        blank_id=0,
        encoder=ConformerConfig(
            num_features=F, d_model=16, num_heads=2, ff_dim=32, num_layers=2, cnn_kernel=5, dropout=dropout
        ),
        decoder=DecoderConfig(decoder_dim=16, context_size=2),
        joiner=JoinerConfig(joiner_dim=24),
    )
    return build_model(cfg)


def batch(lens=(60, 45, 33), labels=(6, 4, 5), pad_value=7):
    x = torch.randn(len(lens), max(lens), F)
    y = torch.full((len(labels), max(labels)), pad_value, dtype=torch.int64)
    for b, n in enumerate(labels):
        y[b, :n] = torch.randint(1, V, (n,))
    return x, torch.tensor(lens), y, torch.tensor(labels)


def full_lattice_losses(model, x, x_lens, y, y_lens, lm_scale_zero=True):
    """Oracle: torchaudio's RNN-T loss on the unpruned lattice, for the simple and the full joiner."""
    enc, enc_lens = model.encode(x, x_lens)
    blank = torch.zeros(y.size(0), 1, dtype=torch.int64)
    y = torch.where(torch.arange(y.size(1)) < y_lens[:, None], y, 0)
    dec = model.decoder(torch.cat([blank, y], dim=1))
    simple_logits = model.simple_am_proj(enc).unsqueeze(2) + model.simple_lm_proj(dec).unsqueeze(1)
    joint_logits = model.joiner(enc.unsqueeze(2), dec.unsqueeze(1))
    args = dict(targets=y.int(), logit_lengths=enc_lens.int(), target_lengths=y_lens.int(), blank=0, reduction="none")
    return (torchaudio.functional.rnnt_loss(simple_logits, **args),
            torchaudio.functional.rnnt_loss(joint_logits, **args))


def test_losses_shapes_dtypes_and_sum_reduction():
    model = tiny_model().eval()
    x, x_lens, y, y_lens = batch()
    simple, pruned = model(x, x_lens, y, y_lens, **LOSS_ARGS)
    assert simple.shape == () and pruned.shape == ()
    simple_b, pruned_b = model(x, x_lens, y, y_lens, reduction="none", **LOSS_ARGS)
    assert simple_b.shape == (3,) and pruned_b.shape == (3,)
    torch.testing.assert_close(simple_b.sum(), simple)
    torch.testing.assert_close(pruned_b.sum(), pruned)
    assert torch.all(simple_b > 0) and torch.all(pruned_b > 0)


def test_losses_match_the_full_lattice_oracle():
    model = tiny_model().eval()
    x, x_lens, y, y_lens = batch()
    simple_oracle, full_oracle = full_lattice_losses(model, x, x_lens, y, y_lens)
    # Unsmoothed simple loss == RNN-T loss of the "simple joiner" am + lm.
    simple, _ = model(x, x_lens, y, y_lens, prune_range=3, am_scale=0.0, lm_scale=0.0, reduction="none")
    torch.testing.assert_close(simple, simple_oracle, atol=1e-4, rtol=1e-5)
    # A prune range covering every label keeps the whole lattice: pruned loss == full RNN-T loss.
    _, unpruned = model(x, x_lens, y, y_lens, prune_range=int(y_lens.max()) + 1, am_scale=0.0, lm_scale=0.25,
                        reduction="none")
    torch.testing.assert_close(unpruned, full_oracle, atol=1e-4, rtol=1e-5)
    # Pruning keeps a subset of the paths: the loss can only go up.
    _, pruned = model(x, x_lens, y, y_lens, prune_range=2, am_scale=0.0, lm_scale=0.25, reduction="none")
    assert torch.all(pruned >= full_oracle - 1e-4)


def test_losses_are_float32_under_autocast():
    model = tiny_model().eval()
    x, x_lens, y, y_lens = batch()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        simple, pruned = model(x, x_lens, y, y_lens, **LOSS_ARGS)
    assert simple.dtype == torch.float32 and pruned.dtype == torch.float32
    assert torch.isfinite(simple) and torch.isfinite(pruned)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_padding_frames_and_labels_does_not_change_any_loss(dtype, tol):
    model = tiny_model().eval().to(dtype)
    x, x_lens, y, y_lens = batch(lens=(60, 45, 33), labels=(7, 4, 6))
    x = x.to(dtype)
    # The same batch with 17 more frames of garbage and 5 more label columns of garbage.
    x_pad = torch.cat([x, 50 * torch.randn(3, 17, F, dtype=dtype)], dim=1)
    for b, n in enumerate(x_lens.tolist()):
        x_pad[b, n:] = 50 * torch.randn(x_pad.size(1) - n, F, dtype=dtype)
    y_pad = torch.cat([y, torch.randint(0, V, (3, 5))], dim=1)
    args = dict(reduction="none", **LOSS_ARGS)
    simple, pruned = model(x, x_lens, y, y_lens, **args)
    simple_p, pruned_p = model(x_pad, x_lens, y_pad, y_lens, **args)
    for b in range(3):  # and each utterance alone, without any padding
        s, p = model(x[b : b + 1, : x_lens[b]], x_lens[b : b + 1], y[b : b + 1, : y_lens[b]], y_lens[b : b + 1], **args)
        torch.testing.assert_close(s[0], simple[b], atol=tol, rtol=tol)
        torch.testing.assert_close(p[0], pruned[b], atol=tol, rtol=tol)
    torch.testing.assert_close(simple_p, simple, atol=tol, rtol=tol)
    torch.testing.assert_close(pruned_p, pruned, atol=tol, rtol=tol)


def test_bad_inputs_raise_clear_errors():
    model = tiny_model()
    x, x_lens, y, y_lens = batch()
    with pytest.raises(ValueError, match="y_lens"):
        model(x, x_lens, y, torch.tensor([6, 0, 5]), **LOSS_ARGS)
    with pytest.raises(ValueError, match="labels must lie"):
        model(x, x_lens, torch.where(y == y, V, y), y_lens, **LOSS_ARGS)
    with pytest.raises(ValueError, match="int64"):
        model(x, x_lens, y.int(), y_lens, **LOSS_ARGS)
    with pytest.raises(ValueError, match="reduction"):
        model(x, x_lens, y, y_lens, reduction="mean", **LOSS_ARGS)


def test_tiny_model_overfits_four_utterances():
    """Random features, random labels: a tiny model learns them by heart in a few hundred CPU steps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few ms per step alone; many times slower when threads contend on a busy CPU
    try:
        torch.manual_seed(0)
        model = tiny_model().train()
        x, x_lens, y, y_lens = batch(lens=(40, 36, 32, 28), labels=(5, 4, 5, 3))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        start = time.monotonic()
        history = []
        for step in range(500):
            simple, pruned = model(x, x_lens, y, y_lens, reduction="none", **LOSS_ARGS)
            history.append(pruned.detach())
            if torch.all(pruned < 0.1):
                break
            opt.zero_grad()
            (0.5 * simple.sum() + pruned.sum()).backward()
            opt.step()
        elapsed = time.monotonic() - start
    finally:
        torch.set_num_threads(threads)
    assert torch.all(history[0] > 10), history[0]  # it started far from zero: log(V) per frame and label
    assert torch.all(history[-1] < 0.1), (step, history[-1])  # per-utterance pruned loss, nats
    assert elapsed < 30, elapsed


@pytest.mark.parametrize("yaml_path", sorted(CONF_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_yaml_builds_and_runs(yaml_path):
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(yaml_path))
    model = build_model(cfg).eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert f"{n_params:,}" in yaml_path.read_text(), f"parameter table of {yaml_path.name} is stale: {n_params:,}"
    if n_params < 10_000_000:  # run the small ones end to end
        x = torch.randn(2, 50, cfg.encoder.num_features)
        y = torch.randint(1, cfg.vocab_size, (2, 4))
        with torch.no_grad():
            simple, pruned = model(x, torch.tensor([50, 40]), y, torch.tensor([4, 3]), **LOSS_ARGS)
        assert torch.isfinite(simple) and torch.isfinite(pruned)


def test_model_yamls_exist():
    assert {p.stem for p in CONF_DIR.glob("*.yaml")} >= {"conformer_l12", "conformer_small"}


@pytest.mark.oracle
def test_losses_and_gradients_agree_across_loss_backends():
    """The model's losses and gradients through asr.loss's torch backend equal those through fast_rnnt."""
    pytest.importorskip("fast_rnnt")
    import asr.loss

    if not hasattr(asr.loss, "set_backend"):
        pytest.skip("asr.loss has no backend switch yet")
    model = tiny_model().eval()
    x, x_lens, y, y_lens = batch(lens=(60, 45, 33), labels=(9, 4, 6))
    results = {}
    previous = asr.loss.get_backend()
    try:
        for backend in ("torch", "fast_rnnt"):
            asr.loss.set_backend(backend)
            model.zero_grad()
            simple, pruned = model(x, x_lens, y, y_lens, reduction="none", **LOSS_ARGS)
            (0.5 * simple.sum() + pruned.sum()).backward()
            results[backend] = (simple.detach(), pruned.detach(), [p.grad.clone() for p in model.parameters()])
    finally:
        asr.loss.set_backend(previous)
    ours, oracle = results["torch"], results["fast_rnnt"]
    torch.testing.assert_close(ours[0], oracle[0], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours[1], oracle[1], atol=1e-4, rtol=1e-5)
    for g, g_ref in zip(ours[2], oracle[2]):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)


def test_parameter_count_printer(capsys):
    from asr.models.__main__ import main

    main([str(CONF_DIR / "conformer_small.yaml")])
    out = capsys.readouterr().out
    n_params = sum(p.numel() for p in build_model(
        OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF_DIR / "conformer_small.yaml"))
    ).parameters())
    assert "conformer_small" in out and f"{n_params:,}" in out


def test_delay_penalty_reaches_both_losses():
    model = tiny_model().eval()
    x, x_lens, y, y_lens = batch()
    base = model(x, x_lens, y, y_lens, reduction="none", **LOSS_ARGS)
    same = model(x, x_lens, y, y_lens, reduction="none", delay_penalty=0.0, **LOSS_ARGS)
    penalised = model(x, x_lens, y, y_lens, reduction="none", delay_penalty=0.5, **LOSS_ARGS)
    for b, s, p in zip(base, same, penalised):
        torch.testing.assert_close(b, s)
        assert not torch.allclose(b, p)


def test_pruning_gathers_joiner_dim_vectors(monkeypatch):
    """The joiner's projections run before pruning: do_rnnt_pruning sees (B, T', J) and (B, U + 1, J), not V."""
    import asr.loss

    seen = []
    original = asr.loss.do_rnnt_pruning

    def recording(am, lm, ranges):
        seen.append((tuple(am.shape), tuple(lm.shape), tuple(ranges.shape)))
        return original(am=am, lm=lm, ranges=ranges)

    monkeypatch.setattr(asr.loss, "do_rnnt_pruning", recording)
    model = tiny_model().eval()
    x, x_lens, y, y_lens = batch()
    model(x, x_lens, y, y_lens, **LOSS_ARGS)
    t_out = int(model.encode(x, x_lens)[1].max())
    assert seen == [((3, t_out, 24), (3, y.size(1) + 1, 24), (3, t_out, LOSS_ARGS["prune_range"]))]
