"""Fine-tuning (asr.train.init_from): weights from another run, some modules loaded, some frozen, mismatches refused;
and a model pretrained on one "voice" of the tone language learns a held-back voice faster than from scratch."""

import dataclasses
import json
import logging

import pytest
import torch

from asr.checkpoint import UnsafeCheckpointError, average_state_dicts, load_checkpoint, save_checkpoint
from asr.loss.config import LossConfig
from asr.models import ModelConfig, build_model
from asr.train.config import OptimConfig, TrainerConfig
from asr.train.distributed import DistInfo
from asr.train.init_from import RECORD, InitError, prepare_model
from asr.train.optim import build_optimizer
from asr.train.trainer import Trainer
from tests.train.ports import free_port
from tests.train.tiny import fixed_batches, make_cuts, tiny_model_config

CPU = DistInfo(0, 1, 0, torch.device("cpu"))


def _cfg(vocab_size: int | None = None, **encoder) -> ModelConfig:
    cfg = tiny_model_config(dropout=0.1)
    if vocab_size is not None:
        cfg.vocab_size = vocab_size
    cfg.encoder = dataclasses.replace(cfg.encoder, **encoder)
    return cfg


def _model(cfg: ModelConfig, seed: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(cfg)


def _config(cfg: ModelConfig) -> dict:
    return {"model": dataclasses.asdict(cfg)}


def _trainer(exp_dir, model, batches, config: dict, optim: OptimConfig | None = None, loss: LossConfig | None = None,
             **overrides) -> Trainer:
    """A single-CPU Trainer over fixed batches, saving checkpoint-N.pt every batch and epoch-E.pt per epoch."""
    optim = optim or OptimConfig(model_size=16, warm_step=100)
    optimizer, schedule = build_optimizer(model, optim)
    fields = dict(exp_dir=str(exp_dir), num_epochs=1, device="cpu", log_interval=1, valid_interval=0, save_every_n=1,
                  keep_last_k=10, average_period=0, tensorboard=False, graceful_signals=False)  # fmt: skip
    fields.update(overrides)
    return Trainer(
        model=model, optimizer=optimizer, schedule=schedule, cfg=TrainerConfig(**fields),
        loss=loss or LossConfig(prune_range=3, warm_step=2), dist=CPU, make_train_loader=lambda state: batches,
        valid_loader=None, clip_grad_norm=optim.clip_grad_norm, config=config,
    )  # fmt: skip


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A source experiment: the tiny model trained 2 epochs of 2 batches (epoch-1.pt, epoch-2.pt, checkpoint-1..4.pt),
    its config in every checkpoint."""
    exp = tmp_path_factory.mktemp("source")
    cfg = _cfg()
    batches = fixed_batches(make_cuts(8), 0, 1, global_batch=4)
    _trainer(exp, _model(cfg, seed=1), batches, _config(cfg), num_epochs=2).fit()
    return exp


def _tcfg(exp_dir, **fields) -> TrainerConfig:
    return TrainerConfig(exp_dir=str(exp_dir), **fields)


def _same(a: dict, b: dict, keys) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


def test_init_from_an_exp_dir_with_epoch_avg_or_one_file_loads_the_weights_only(source, tmp_path):
    e1, e2 = (load_checkpoint(source / f"epoch-{e}.pt") for e in (1, 2))
    assert e2["batch_idx_train"] == 4 and e2["optimizer"]["state"]  # the source has trained and has optimiser state
    averaged = average_state_dicts([e1["model"], e2["model"]])
    choices = [
        (dict(init_from=str(source), init_epoch=2, init_avg=2), averaged, "epoch-2-avg-2"),
        (dict(init_from=str(source)), e2["model"], "epoch-2-avg-1"),  # epoch 0: the newest
        (dict(init_from=str(source), init_iter=3), load_checkpoint(source / "checkpoint-3.pt")["model"], "iter-3"),
        (dict(init_from=str(source / "epoch-1.pt")), e1["model"], "epoch-1"),
    ]
    for i, (fields, expected, selection) in enumerate(choices):
        exp = tmp_path / f"ft{i}"
        model = _model(_cfg())
        record = prepare_model(model, _tcfg(exp, **fields), dataclasses.asdict(_cfg()))
        state = model.state_dict()
        assert set(state) == set(expected) and _same(state, expected, state)  # bit-identical
        assert record["selection"].startswith(selection) and record["reinitialised"] == []
        assert json.loads((exp / RECORD).read_text())["source_config"] == _config(_cfg())  # the config travels
    # a fresh optimiser, schedule and step count: one batch of fine-tuning is step 1 of a new run
    batches = fixed_batches(make_cuts(4), 0, 1, global_batch=4)
    trainer = _trainer(exp, model, batches, {**_config(_cfg()), "init_from": record})
    assert not trainer.optimizer.state and trainer.schedule.batch == 0
    trainer.fit()
    saved = load_checkpoint(exp / "epoch-1.pt")
    assert saved["batch_idx_train"] == 1 and saved["scheduler"]["batch"] == 1
    assert {int(s["step"]) for s in saved["optimizer"]["state"].values()} == {1}
    assert saved["config"]["init_from"]["source"] == str((source / "epoch-1.pt").resolve())


def test_init_modules_encoder_with_a_new_vocabulary(source, tmp_path):
    src = load_checkpoint(source / "epoch-2.pt")["model"]
    new_cfg = _cfg(vocab_size=12)
    model = _model(new_cfg, seed=5)
    fresh = {k: v.clone() for k, v in _model(new_cfg, seed=5).state_dict().items()}  # the same seed's initial weights
    with pytest.raises(InitError, match=r"(?s)model\.vocab_size: 8 in the source, 12 here.*init_modules=\[encoder\]"):
        prepare_model(model, _tcfg(tmp_path / "all", init_from=str(source)), dataclasses.asdict(new_cfg))
    assert _same(model.state_dict(), fresh, fresh)  # refused before anything was copied

    record = prepare_model(model, _tcfg(tmp_path / "enc", init_from=str(source), init_modules=["encoder"]),
                           dataclasses.asdict(new_cfg))  # fmt: skip
    state = model.state_dict()
    encoder = [k for k in state if k.startswith("encoder.")]
    rest = [k for k in state if not k.startswith("encoder.")]
    assert encoder and rest and _same(state, src, encoder)  # the encoder bit-identical to the source's
    assert _same(state, fresh, rest)  # decoder, joiner, projections: the fresh initialisation
    assert not torch.equal(state["joiner.encoder_proj.weight"], src["joiner.encoder_proj.weight"])  # same shape, new
    assert record["modules"] == ["encoder"]
    assert record["reinitialised"] == ["decoder", "joiner", "simple_am_proj", "simple_lm_proj"]


@pytest.mark.parametrize("optimizer", ["adam", "scaled_adam"])
def test_frozen_modules_stay_unchanged_and_out_of_the_optimiser(source, tmp_path, optimizer):
    model = _model(_cfg())
    tcfg = _tcfg(tmp_path, init_from=str(source), freeze_modules=["encoder", "simple_am_proj"])
    record = prepare_model(model, tcfg, dataclasses.asdict(_cfg()))
    assert record["frozen"] == ["encoder", "simple_am_proj"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optim = OptimConfig(optimizer=optimizer, schedule="eden", base_lr=0.05, clip_grad_norm=0.0, warmup_batches=0)
    batches = fixed_batches(make_cuts(12), 0, 1, global_batch=4)
    trainer = _trainer(tmp_path, model, batches, _config(_cfg()), optim=optim)
    in_optimiser = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert all((id(p) in in_optimiser) == (not n.startswith(("encoder.", "simple_am_proj."))) for n, p in named.items())
    modes = []
    model.encoder.register_forward_hook(lambda m, i, o: modes.append((m.training, m.layers[0].training)))
    trainer.fit()
    after = model.state_dict()
    frozen = [k for k in after if k.startswith(("encoder.", "simple_am_proj."))]
    assert any("running_mean" in k for k in frozen)  # BatchNorm statistics: kept too (eval mode)
    assert _same(after, before, frozen)
    assert all(not torch.equal(after[k], before[k]) for k in after if k.startswith(("decoder.", "joiner.")))
    assert modes == [(False, False)] * 3  # dropout off in the frozen encoder while the rest trains


@pytest.mark.parametrize("change,key,values", [
    (dict(num_features=10), "encoder.num_features", "8 in the source, 10 here"),
    (dict(num_heads=4), "encoder.num_heads", "2 in the source, 4 here"),  # same tensor shapes, other function
    (dict(num_layers=2), "encoder.num_layers", "1 in the source, 2 here"),
    (dict(input_norm="utterance"), "encoder.input_norm", "'none' in the source, 'utterance' here"),
    (dict(subsampling_conv="depthwise"), "encoder.subsampling_conv", "'full' in the source, 'depthwise' here"),
])  # fmt: skip
def test_refuses_another_feature_dim_or_encoder_architecture(source, tmp_path, change, key, values):
    cfg = _cfg(**change)
    for modules in ([], ["encoder"]):
        tcfg = _tcfg(tmp_path, init_from=str(source), init_modules=modules)
        with pytest.raises(InitError, match=rf"(?s)model\.{key}: {values}.*encoder .*cannot change"):
            prepare_model(_model(cfg), tcfg, dataclasses.asdict(cfg))
    # the decoder alone does not depend on the encoder's architecture
    decoder_only = _tcfg(tmp_path, init_from=str(source), init_modules=["decoder"])
    prepare_model(_model(cfg), decoder_only, dataclasses.asdict(cfg))


def test_dropout_may_differ(source, tmp_path):
    cfg = _cfg(dropout=0.3)
    prepare_model(_model(cfg), _tcfg(tmp_path, init_from=str(source)), dataclasses.asdict(cfg))


def test_a_tensor_of_another_shape_is_named_with_both_shapes(source, tmp_path):
    state = load_checkpoint(source / "epoch-2.pt")
    state["model"]["joiner.output_linear.weight"] = state["model"]["joiner.output_linear.weight"][:, :12]
    save_checkpoint(tmp_path / "src" / "odd.pt", {"model": state["model"], "config": state["config"]})
    shapes = r"joiner\.output_linear\.weight: shape \(8, 12\) in the source, \(8, 16\) here"
    with pytest.raises(InitError, match=shapes):
        prepare_model(_model(_cfg()), _tcfg(tmp_path / "ft", init_from=str(tmp_path / "src" / "odd.pt")),
                      dataclasses.asdict(_cfg()))  # fmt: skip


def test_decoder_and_joiner_need_the_same_bpe_model(source, tmp_path):
    state = load_checkpoint(source / "epoch-2.pt")
    theirs, ours, copy = tmp_path / "theirs.model", tmp_path / "ours.model", tmp_path / "copy.model"
    theirs.write_bytes(b"pieces of the source")
    ours.write_bytes(b"other pieces, as many")
    copy.write_bytes(theirs.read_bytes())
    src = tmp_path / "src" / "epoch-1.pt"
    save_checkpoint(src, {"model": state["model"], "config": {**state["config"], "data": {"bpe_model": str(theirs)}}})
    cfg = dataclasses.asdict(_cfg())
    with pytest.raises(InitError, match=r"(?s)BPE model .*theirs\.model.*ours\.model.*init_modules=\[encoder\]"):
        prepare_model(_model(_cfg()), _tcfg(tmp_path / "a", init_from=str(src)), cfg, str(ours))
    prepare_model(_model(_cfg()), _tcfg(tmp_path / "b", init_from=str(src), init_modules=["encoder"]), cfg, str(ours))
    prepare_model(_model(_cfg()), _tcfg(tmp_path / "c", init_from=str(src)), cfg, str(copy))  # same file, elsewhere


def test_an_unsafe_source_is_refused_and_runs_nothing(tmp_path):
    from tests.test_checkpoint import _malicious

    marker = tmp_path / "ran"
    _malicious(tmp_path / "src" / "epoch-1.pt", marker)
    for init_from in (tmp_path / "src", tmp_path / "src" / "epoch-1.pt"):
        with pytest.raises(UnsafeCheckpointError):
            prepare_model(_model(_cfg()), _tcfg(tmp_path / "ft", init_from=str(init_from)), dataclasses.asdict(_cfg()))
    assert not marker.exists()


def test_unknown_module_names_and_init_modules_without_init_from(source, tmp_path):
    cfg = dataclasses.asdict(_cfg())
    with pytest.raises(InitError, match=r"freeze_modules: the model has no module 'encodr'.*encoder, decoder, joiner"):
        prepare_model(_model(_cfg()), _tcfg(tmp_path, init_from=str(source), freeze_modules=["encodr"]), cfg)
    with pytest.raises(InitError, match=r"init_modules: the model has no module 'encoder.nope'"):
        prepare_model(_model(_cfg()), _tcfg(tmp_path, init_from=str(source), init_modules=["encoder.nope"]), cfg)
    with pytest.raises(InitError, match=r"init_modules=\['encoder'\] needs trainer.init_from"):
        prepare_model(_model(_cfg()), _tcfg(tmp_path, init_modules=["encoder"]), cfg)
    with pytest.raises(FileNotFoundError, match="no such checkpoint file or experiment directory"):
        prepare_model(_model(_cfg()), _tcfg(tmp_path, init_from=str(tmp_path / "nothing")), cfg)
    assert not (tmp_path / RECORD).exists()


def test_resume_wins_over_init_from(source, tmp_path, caplog):
    model = _model(_cfg())
    tcfg = _tcfg(tmp_path, init_from=str(source), freeze_modules=["encoder"])
    record = prepare_model(model, tcfg, dataclasses.asdict(_cfg()))
    batches = fixed_batches(make_cuts(8), 0, 1, global_batch=4)
    _trainer(tmp_path, model, batches, {**_config(_cfg()), "init_from": record}, max_steps=1).fit()

    again = _model(_cfg())
    fresh = {k: v.clone() for k, v in again.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="asr.train"):
        resumed_record = prepare_model(again, tcfg, dataclasses.asdict(_cfg()))
    assert "init_from=" in caplog.text and "ignored" in caplog.text and "resumes" in caplog.text
    assert _same(again.state_dict(), fresh, fresh)  # nothing loaded: the trainer's resume will
    assert resumed_record == json.loads((tmp_path / RECORD).read_text())  # the record survives the restart
    assert all(not p.requires_grad for p in again.encoder.parameters())  # still frozen: the optimiser matches
    trainer = _trainer(tmp_path, again, batches, {**_config(_cfg()), "init_from": resumed_record}, max_steps=2)
    trainer.fit()
    assert trainer.state.batch_idx_train == 2
    assert load_checkpoint(tmp_path / "epoch-1.pt")["config"]["init_from"]["source"] == record["source"]


def test_a_record_left_by_an_earlier_start_is_removed(tmp_path):
    (tmp_path / RECORD).write_text('{"source": "an earlier start, whose checkpoints were deleted"}')
    assert prepare_model(_model(_cfg()), _tcfg(tmp_path), dataclasses.asdict(_cfg())) is None
    assert not (tmp_path / RECORD).exists()


# ------------------------------------------------------------------------------------ a voice held back from training
VOICE_B = (390.0, 680.0, 1100.0, 1700.0, 2600.0, 4000.0)  # the tone language's words spoken 30% higher


def _tone_batches(freqs, n: int, seed: int, bpe_model, batch: int = 8) -> list:
    from lhotse import Fbank, FbankConfig

    from asr.data.batch import Batch
    from asr.data.tokenizer import Tokenizer
    from tests.tone_asr import SR, corpus

    tok, fbank = Tokenizer(bpe_model), Fbank(FbankConfig(num_filters=80))
    items = corpus(n, seed, freqs)
    out = []
    for start in range(0, n, batch):
        part = items[start : start + batch]
        feats = [torch.from_numpy(fbank.extract(a, SR)).float() for _, a in part]  # (T, F) each
        ids = [torch.tensor(t) for t in tok.encode([" ".join(w) for w, _ in part])]
        out.append(Batch(
            features=torch.nn.utils.rnn.pad_sequence(feats, batch_first=True),  # (B, T, F)
            feature_lens=torch.tensor([f.size(0) for f in feats]),
            tokens=torch.nn.utils.rnn.pad_sequence(ids, batch_first=True),  # (B, U)
            token_lens=torch.tensor([t.numel() for t in ids]),
            cut_ids=[f"b-{start + i}" for i in range(len(part))], texts=[" ".join(w) for w, _ in part],
        ))  # fmt: skip
    return out


@torch.no_grad()
def _loss_per_frame(model, batches) -> float:
    model.eval()
    total, frames = 0.0, 0
    for b in batches:
        simple, pruned = model(b.features, b.feature_lens, b.tokens, b.token_lens, prune_range=4, am_scale=0.0,
                               lm_scale=0.25)  # fmt: skip
        total += float(0.5 * simple + pruned)
        frames += int(model.encoder.output_lengths(b.feature_lens).sum())
    return total / frames


def test_a_held_back_voice_is_learnt_faster_from_the_pretrained_model(trained, tmp_path):
    """Pretrained on voice A (tests/tone_asr.py), fine-tuned on voice B for K batches: lower loss on B's held-out
    utterances than the same K batches from scratch (same initial seed, batches, optimiser and schedule)."""
    from omegaconf import OmegaConf

    from tests.tone_asr import FREQS, model_config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_b = _tone_batches(VOICE_B, 48, seed=11, bpe_model=trained.bpe_model)  # 6 batches of 8
        test_b = _tone_batches(VOICE_B, 16, seed=12, bpe_model=trained.bpe_model)
        test_a = _tone_batches(FREQS, 16, seed=12, bpe_model=trained.bpe_model)  # the same sentences in voice A
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), model_config()))
        optim = OptimConfig(schedule="eden", base_lr=2e-3, lr_batches=1e9, lr_epochs=1e9, warmup_batches=0)
        loss = LossConfig(prune_range=4, warm_step=0)  # the same loss for both runs from the first batch
        results = {}
        for name, init_from in (("finetuned", str(trained.exp_dir)), ("scratch", "")):
            exp = tmp_path / name
            model = _model(cfg, seed=0)
            prepare_model(model, _tcfg(exp, init_from=init_from), model_config(), str(trained.bpe_model))
            start = _loss_per_frame(model, test_b)
            if init_from:
                results["pretrained on voice A"] = _loss_per_frame(model, test_a)
            _trainer(exp, model, train_b, {"model": model_config()}, optim=optim, loss=loss, num_epochs=2,
                     save_every_n=0).fit()  # fmt: skip
            results[name] = (start, _loss_per_frame(model, test_b))
    finally:
        torch.set_num_threads(threads)
    (ft_start, ft_end), (scratch_start, scratch_end) = results["finetuned"], results["scratch"]
    assert ft_start > 2 * results["pretrained on voice A"], results  # voice B is new to the pretrained model
    assert ft_end < ft_start and scratch_end < scratch_start, results  # both learn
    assert ft_end < 0.7 * scratch_end, results  # the pretrained encoder, decoder and joiner carry over


# ------------------------------------------------------------------------------------------ through the entry point
@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The tiny prepared LibriSpeech-layout corpus of tests/train/test_entry.py."""
    from tests.data.data_fixtures import make_corpus, prepare_corpus

    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, {"train-clean-100": 6, "dev-clean": 2})
    return prepare_corpus(root, tmp_path_factory.mktemp("prepared"))


@pytest.mark.slow
def test_entry_point_fine_tunes_freezes_records_and_resumes(tmp_path, python_exe, prepared):
    """recipes/librispeech/train.py with trainer.init_from: the record, the frozen encoder, then resume wins."""
    from tests.train.test_entry import _train

    source, ft = tmp_path / "source", tmp_path / "ft"
    first = _train(prepared, source, python_exe, "trainer.max_steps=2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    args = (f"trainer.init_from={source}", "trainer.init_modules=[encoder,decoder]", "trainer.freeze_modules=[encoder]",
            "trainer.max_steps=2")  # fmt: skip
    tuned = _train(prepared, ft, python_exe, *args)
    assert tuned.returncode == 0, tuned.stdout[-3000:] + tuned.stderr[-3000:]
    assert "initialised encoder, decoder from" in tuned.stdout
    assert "fresh weights in joiner, simple_am_proj, simple_lm_proj" in tuned.stdout
    record = json.loads((ft / RECORD).read_text())
    assert record["selection"] == "epoch-1-avg-1" and record["frozen"] == ["encoder"]
    src, out = load_checkpoint(source / "epoch-1.pt"), load_checkpoint(ft / "epoch-1.pt")
    assert out["batch_idx_train"] == 2
    assert out["config"]["init_from"]["source"] == str((source / "epoch-1.pt").resolve())
    assert out["config"]["init_from"]["source_config"]["model"] == src["config"]["model"]  # the original config
    encoder = [k for k in out["model"] if k.startswith("encoder.")]
    assert _same(out["model"], src["model"], encoder)  # loaded, then frozen
    assert not _same(out["model"], src["model"], [k for k in out["model"] if k.startswith("decoder.")])  # trained on

    again = _train(prepared, ft, python_exe, *args[:-1], "trainer.max_steps=3")  # the same command, a longer budget
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "ignored" in again.stdout and "resumed from" in again.stdout
    resumed = load_checkpoint(ft / "epoch-1.pt")
    assert resumed["batch_idx_train"] == 3 and resumed["config"]["init_from"] == out["config"]["init_from"]
    assert _same(resumed["model"], src["model"], encoder)


DDP_SCRIPT = """
import os, sys, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from asr.train.init_from import freeze
from tests.train.tiny import fixed_batches, make_cuts, tiny_model

rank = int(os.environ["RANK"])
dist.init_process_group("gloo")
model = tiny_model(0.1, seed=0)
freeze(model, ["encoder"])
frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
ddp = DistributedDataParallel(model, find_unused_parameters=False)
opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
for b in fixed_batches(make_cuts(16), rank, 2, global_batch=4):
    simple, pruned = ddp(b.features, b.feature_lens, b.tokens, b.token_lens, prune_range=3, am_scale=0.0,
                         lm_scale=0.25)
    (simple + pruned).backward()
    opt.step()
    opt.zero_grad()
assert all(torch.equal(v, frozen[k]) for k, v in model.encoder.state_dict().items())
torch.save({k: v.detach() for k, v in model.state_dict().items()}, sys.argv[1] + f"/rank{rank}.pt")
dist.destroy_process_group()
"""


def test_ddp_trains_with_frozen_modules_without_find_unused_parameters(tmp_path, python_exe):
    """Two gloo ranks, the encoder frozen, find_unused_parameters false (the default): DDP does not register the
    frozen parameters, the steps complete and both ranks hold the same weights."""
    import os
    import subprocess
    from pathlib import Path

    script = tmp_path / "ddp_frozen.py"
    script.write_text(DDP_SCRIPT)
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo), PYTHONWARNINGS="ignore")
    cmd = [python_exe, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(script), str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))  # the script's tensor dicts
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
