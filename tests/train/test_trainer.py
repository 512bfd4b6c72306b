"""The loop in one process on fixed batches: bad utterances, skipped batches, truncated checkpoints."""

import logging

import pytest
import torch

from asr.loss.config import LossConfig
from asr.train.staging import loss_scales
from tests.train.tiny import SyntheticDataset, fixed_batches, make_cuts, make_trainer


def _finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_bad_utterances_dropped_and_all_bad_batch_skipped(tmp_path, caplog):
    # 3 batches of 4 cuts: batch 1 has a NaN feature (cut 1), batch 2 an impossible utterance (cut 6: more
    # tokens than encoder frames), batch 3 is all bad.
    ds = SyntheticDataset(nan_ids=frozenset({1, 8, 9}), long_ids=frozenset({6, 10, 11}))
    batches = fixed_batches(make_cuts(12), 0, 1, global_batch=4, ds=ds)
    trainer = make_trainer(tmp_path, batches, save_every_n=0)
    before = {k: v.clone() for k, v in trainer.raw_model.named_parameters()}
    with caplog.at_level(logging.WARNING, logger="asr.train"):
        trainer.fit()
    assert trainer.state.counters["bad_utterances"] == 6
    assert trainer.state.counters["skipped_batches"] == 1
    assert trainer.state.batch_idx_train == 3
    assert _finite(trainer.raw_model)
    assert any(not torch.equal(before[k], v) for k, v in trainer.raw_model.named_parameters())
    logged = caplog.text
    assert "dummy-mono-cut-0001" in logged and "dummy-mono-cut-0006" in logged and "skipped" in logged
    saved = torch.load(tmp_path / "epoch-1.pt", weights_only=False)
    assert saved["counters"]["bad_utterances"] == 6 and saved["precision"] == "none"  # the resolved trainer.amp
    assert all(bool(torch.isfinite(v).all()) for v in saved["model"].values() if v.is_floating_point())


def test_truncated_checkpoint_falls_back_to_previous(tmp_path):
    batches = fixed_batches(make_cuts(16), 0, 1, global_batch=4)  # 4 batches
    first = make_trainer(tmp_path, batches, max_steps=2)
    first.fit()
    for newest in ("checkpoint-2.pt", "epoch-1.pt"):  # both hold batch 2 (epoch-1.pt: the max_steps stop)
        data = (tmp_path / newest).read_bytes()
        (tmp_path / newest).write_bytes(data[: len(data) // 3])

    calls: list = []
    second = make_trainer(tmp_path, batches, calls=calls, max_steps=3)
    with pytest.warns(UserWarning, match="checkpoint-2.pt"):
        second.fit()
    assert second.state.batch_idx_train == 3
    # resumed after batch 1: it trained batches 2 and 3 of the list, in order
    assert [c.cut_ids for c in calls] == [b.cut_ids for b in batches[1:3]]


def test_max_steps_stop_validates_and_saves_the_partial_epoch_for_decoding(tmp_path):
    batches = fixed_batches(make_cuts(16), 0, 1, global_batch=4)  # 4 batches
    trainer = make_trainer(tmp_path, batches, max_steps=3, save_every_n=0)
    trainer.valid_loader = batches[:2]
    validated = []
    validate = trainer.validate
    trainer.validate = lambda: validated.append(trainer.state.batch_idx_train) or validate()
    trainer.fit()
    assert validated == [3]
    state = torch.load(tmp_path / "epoch-1.pt", weights_only=False)
    assert state["batch_idx_train"] == 3 and not state["sampler"]["epoch_finished"]
    assert not list(tmp_path.glob("checkpoint-*.pt"))


def test_validation_leaves_the_global_generators_as_it_found_them(tmp_path):
    batches = fixed_batches(make_cuts(8), 0, 1, global_batch=4)
    trainer = make_trainer(tmp_path, batches)
    trainer.valid_loader = _RandomLoader(batches)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    out = trainer.validate()
    assert out is not None and out["frames"] > 0 and trainer.valid_loader.draws == 1
    assert torch.equal(torch.get_rng_state(), before)


class _RandomLoader:
    """A validation loader whose iterator draws from torch's global generator, as a DataLoader's does."""

    def __init__(self, batches: list) -> None:
        self.batches, self.draws = batches, 0

    def __iter__(self):
        torch.randint(0, 2**31, (1,))
        self.draws += 1
        return iter(self.batches)


def test_fp16_on_cpu_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        make_trainer(tmp_path, [], amp="fp16")


@pytest.mark.parametrize("fraction,epochs,max_steps,warned", [(0.5, 2, 0, False), (0.6, 2, 0, True),
                                                              (0.3, 1, 0, True), (0.6, 2, 6, False)])
def test_cooldown_total_and_late_start_warning(tmp_path, caplog, fraction, epochs, max_steps, warned):
    """The trainer gives the schedule its total (after epoch 1, or at once with max_steps), the rate ends at 0, and
    a cool-down that would start inside the first epoch, whose length is unknown then, is warned about."""
    batches = fixed_batches(make_cuts(12), 0, 1, global_batch=4)  # 3 batches an epoch
    trainer = make_trainer(tmp_path, batches, num_epochs=epochs, max_steps=max_steps, save_every_n=0)
    trainer.schedule.cooldown_fraction = fraction
    with caplog.at_level(logging.WARNING, logger="asr.train"):
        trainer.fit()
    assert ("cool-down starts late" in caplog.text) == warned
    if epochs > 1:
        assert trainer.schedule.total_batches == trainer.state.batch_idx_train == 6
        assert trainer.schedule.get_last_lr()[0] == 0.0


def test_time_budget_stops_mid_epoch_saves_the_epoch_and_resumes(tmp_path, caplog):
    """trainer.max_minutes: each batch takes 30 s of a fake clock. A 1.5-minute budget stops after batch 3 of 4
    with the lr cooled down to 0 and epoch-1.pt written; a resumed run with 2.5 minutes adds 2 batches (the rest of
    epoch 1, the first of epoch 2), and one more resume with the same budget trains nothing."""
    batches = fixed_batches(make_cuts(16), 0, 1, global_batch=4)  # 4 batches an epoch

    def budgeted(minutes: float, calls: list):
        trainer = make_trainer(tmp_path, batches, calls=calls, num_epochs=3, max_minutes=minutes, save_every_n=0)
        trainer.schedule.cooldown_fraction = 0.5
        now = [0.0]
        trainer.stopping.clock = lambda: now[0]
        step = trainer.train_step

        def slow_step(batch):
            now[0] += 30.0
            return step(batch)

        trainer.train_step = slow_step
        return trainer

    first_calls: list = []
    first = budgeted(1.5, first_calls)
    with caplog.at_level(logging.INFO, logger="asr.train"):
        first.fit()
    assert first.state.batch_idx_train == 3 and first.state.train_seconds == 90.0
    assert "time budget of 1.5 min spent after 3 batches" in caplog.text
    assert first.schedule.get_last_lr()[0] == 0.0
    saved = torch.load(tmp_path / "epoch-1.pt", weights_only=False)
    assert saved["train_seconds"] == 90.0 and saved["sampler"]["epoch_finished"] is False
    assert saved["sampler"]["batches_done"] == 3

    second_calls: list = []
    second = budgeted(2.5, second_calls)
    second.fit()
    assert second.state.batch_idx_train == 5 and second.state.train_seconds == 150.0
    assert [c.cut_ids for c in second_calls] == [b.cut_ids for b in (batches[3], batches[0])]
    assert torch.load(tmp_path / "epoch-1.pt", weights_only=False)["sampler"]["epoch_finished"] is True
    assert torch.load(tmp_path / "epoch-2.pt", weights_only=False)["sampler"]["batches_done"] == 1

    third = budgeted(2.5, [])
    third.fit()
    assert third.state.batch_idx_train == 5


def test_delay_penalty_reaches_both_losses_and_zero_is_the_plain_loss(tmp_path):
    """loss.delay_penalty goes from the config through the Trainer to the simple and the pruned loss; 0 gives
    exactly the loss of the model's forward without it."""
    batch = fixed_batches(make_cuts(4), 0, 1)[0]

    def trainer_loss(penalty: float):
        cfg = LossConfig(prune_range=3, warm_step=2, delay_penalty=penalty)
        trainer = make_trainer(tmp_path / str(penalty), [], loss=cfg)
        return trainer, trainer.batch_loss(trainer.model, batch)

    trainer, plain = trainer_loss(0.0)
    assert plain.bad_cut_ids == [] and plain.utterances == len(batch)
    simple_scale, pruned_scale = loss_scales(0, "ramp", 2, 0.5)
    with torch.no_grad():
        simple, pruned = trainer.model(x=batch.features, x_lens=batch.feature_lens, y=batch.tokens,
                                       y_lens=batch.token_lens, prune_range=3, am_scale=0.0, lm_scale=0.25,
                                       reduction="none")  # fmt: skip
    assert float(plain.loss.detach()) == float((simple_scale * simple + pruned_scale * pruned).sum())
    assert plain.simple == float(simple.sum()) and plain.pruned == float(pruned.sum())

    _, penalised = trainer_loss(0.5)
    assert penalised.simple != plain.simple and penalised.pruned != plain.pruned
    assert float(penalised.loss.detach()) != float(plain.loss.detach())
