import pytest
import torch

from asr.train.averaging import make_model_average, update_model_average
from asr.train.checkpoint import (
    CheckpointError,
    average_checkpoints,
    average_with_model_avg,
    find_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    remove_old_checkpoints,
    save_checkpoint,
)


def _state(step: int, value: float, epoch_finished: bool = False) -> dict:
    return {
        "model": {"w": torch.full((3,), value), "n": torch.tensor(step)},
        "model_avg": None,
        "batch_idx_train": step,
        "sampler": {"epoch_finished": epoch_finished},
    }


def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_save_load_round_trip_leaves_no_temp_file(tmp_path):
    save_checkpoint(tmp_path / "checkpoint-5.pt", _state(5, 1.5))
    state = load_checkpoint(tmp_path / "checkpoint-5.pt")
    assert torch.equal(state["model"]["w"], torch.full((3,), 1.5)) and state["batch_idx_train"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-5.pt"]


def test_truncated_checkpoint_raises_clear_error(tmp_path):
    path = tmp_path / "checkpoint-5.pt"
    save_checkpoint(path, _state(5, 1.0))
    _truncate(path)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_latest_skips_truncated_with_warning(tmp_path):
    save_checkpoint(tmp_path / "checkpoint-3.pt", _state(3, 1.0))
    save_checkpoint(tmp_path / "epoch-1.pt", _state(4, 2.0, epoch_finished=True))
    save_checkpoint(tmp_path / "checkpoint-6.pt", _state(6, 3.0))
    assert latest_checkpoint(tmp_path).name == "checkpoint-6.pt"
    _truncate(tmp_path / "checkpoint-6.pt")
    with pytest.warns(UserWarning, match="checkpoint-6.pt"):
        assert latest_checkpoint(tmp_path).name == "epoch-1.pt"


def test_epoch_end_is_later_than_same_step_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "checkpoint-4.pt", _state(4, 1.0))
    save_checkpoint(tmp_path / "epoch-1.pt", _state(4, 1.0, epoch_finished=True))
    assert latest_checkpoint(tmp_path).name == "epoch-1.pt"


def test_remove_old_keeps_last_k_and_epochs(tmp_path):
    for step in (2, 4, 6, 8):
        save_checkpoint(tmp_path / f"checkpoint-{step}.pt", _state(step, 0.0))
    save_checkpoint(tmp_path / "epoch-1.pt", _state(5, 0.0, True))
    remove_old_checkpoints(tmp_path, keep_last_k=2)
    assert [p.name for p in find_checkpoints(tmp_path)] == ["checkpoint-6.pt", "checkpoint-8.pt", "epoch-1.pt"]


def test_average_checkpoints_hand_computed(tmp_path):
    paths = []
    for i, (w, n) in enumerate([([1.0, 2.0, 4.0], 3), ([2.0, 2.0, 0.0], 4), ([0.0, 5.0, 2.0], 6)]):
        p = tmp_path / f"epoch-{i + 1}.pt"
        save_checkpoint(p, {"model": {"w": torch.tensor(w), "n": torch.tensor(n)}, "batch_idx_train": i})
        paths.append(p)
    avg = average_checkpoints(paths)
    assert torch.allclose(avg["w"], torch.tensor([1.0, 3.0, 2.0]))  # column means
    assert avg["w"].dtype == torch.float32
    assert int(avg["n"]) == 4  # (3 + 4 + 6) // 3


def test_running_average_is_mean_of_period_snapshots_and_differences():
    model = torch.nn.Linear(2, 1, bias=False)
    avg = make_model_average(model)
    snapshots = []
    for k, value in enumerate([1.0, 3.0, 8.0, 4.0], start=1):  # period 5: batches 5, 10, 15, 20
        with torch.no_grad():
            model.weight.fill_(value)
        snapshots.append(value)
        update_model_average(avg, model, batch_idx_train=5 * k, average_period=5)
        assert torch.allclose(avg.weight, torch.full((1, 2), sum(snapshots) / k, dtype=torch.float64))


def test_average_with_model_avg(tmp_path):
    # running means after 10 and 30 batches: 2.0 and 3.0 -> the mean over batches 11..30 is (3*30 - 2*10) / 20
    for name, n, mean in (("checkpoint-10.pt", 10, 2.0), ("checkpoint-30.pt", 30, 3.0)):
        save_checkpoint(
            tmp_path / name,
            {"model": {"w": torch.zeros(2)}, "model_avg": {"w": torch.full((2,), mean, dtype=torch.float64)},
             "batch_idx_train": n},
        )  # fmt: skip
    out = average_with_model_avg(tmp_path / "checkpoint-10.pt", tmp_path / "checkpoint-30.pt")
    assert torch.allclose(out["w"], torch.full((2,), 3.5)) and out["w"].dtype == torch.float32
