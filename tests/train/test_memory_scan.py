"""The scan before training (asr.train.memory_scan) and the max_duration finder's bisection, on CPU.

Out-of-memory errors are made by a fake step that fails when a batch holds more padded frames than a threshold:
the batch that fails and the largest max_duration that fits are then known.
"""

from types import SimpleNamespace

import pytest
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler

from asr.loss.config import LossConfig
from asr.train.find_batch_size import find_max_duration
from asr.train.memory_scan import (BatchesDoNotFit, MemoryScan, bisect_max_duration, check_batches_fit,
                                   forward_backward, pessimistic_batches, scan_wanted)
from tests.train.tiny import CPU_OOM_MESSAGE, SyntheticDataset, make_cuts, tiny_model

CPU = torch.device("cpu")


def _cut(i: int, duration: float):
    return SimpleNamespace(id=f"c{i}", duration=duration)


def test_pessimistic_batches_by_criterion():
    a = [_cut(i, 1.0) for i in range(5)]  # padded 5.0
    b = [_cut(5, 3.0), _cut(6, 2.9)]  # padded 6.0, longest 3.0
    c = [_cut(7, 8.0)]  # the longest cut alone
    d = [_cut(8, 2.0), _cut(9, 1.0), _cut(10, 1.0)]  # padded 6.0 too, longest 2.0
    got = pessimistic_batches([a, [], b, c, d])
    assert {k: [x.id for x in v] for k, v in got.items()} == {
        "most_padded": ["c7"],  # 8.0 > 6.0 > 5.0
        "most_cuts": ["c0", "c1", "c2", "c3", "c4"],
    }  # longest_cut is c's batch again: left out
    got = pessimistic_batches([a, b, d])
    assert [x.id for x in got["most_padded"]] == ["c5", "c6"]  # a tie on padding goes to the longer cut
    assert list(got) == ["most_padded", "most_cuts"]


def test_bisection_finds_the_threshold_of_a_fake_memory_function():
    calls = []

    def fits(m):
        calls.append(m)
        return m <= 37.3

    best = bisect_max_duration(fits, 1.0, 100.0, tolerance=0.1)
    assert 37.2 <= best <= 37.3 and len(calls) <= 12
    assert bisect_max_duration(lambda m: True, 1.0, 100.0, 0.1) == 100.0
    assert bisect_max_duration(lambda m: False, 1.0, 100.0, 0.1) is None
    with pytest.raises(ValueError, match="tolerance"):
        bisect_max_duration(fits, 1.0, 100.0, tolerance=0.0)


def _fake_oom_step(max_padded_frames: int):
    """A step that runs out of memory when a batch holds more padded frames (B x T) than max_padded_frames."""
    tried = []

    def step(batch):
        tried.append(list(batch.cut_ids))
        if batch.features.size(0) * batch.features.size(1) > max_padded_frames:
            raise RuntimeError(CPU_OOM_MESSAGE)

    return step, tried


def _sampler_scan(step, cuts: CutSet | None = None, **kw) -> MemoryScan:
    cuts = cuts or make_cuts(40)  # 0.30 to 0.65 s

    def sample(max_duration):
        return DynamicBucketingSampler(cuts, max_duration=max_duration, num_buckets=2, shuffle=True, seed=3)

    return MemoryScan(sample, SyntheticDataset().__getitem__, step, CPU, **kw)


def _padded_frames(batch) -> int:
    return round(len(batch) * max(c.duration for c in batch) * 100)


def test_the_scan_reports_the_failing_batch_and_the_largest_max_duration_that_fits():
    limit = 250  # padded frames
    step, tried = _fake_oom_step(limit)
    scan = _sampler_scan(step)
    with pytest.raises(BatchesDoNotFit) as caught:
        check_batches_fit(scan, 4.0, tolerance=0.05)
    msg = str(caught.value)
    # the first criterion's batch at 4 s fails: named with its cut ids and sizes
    failing = pessimistic_batches(scan.sample(4.0))["most_padded"]
    assert _padded_frames(failing) > limit
    assert f"at data.max_duration=4 the most_padded batch ({len(failing)} utterances x " in msg
    assert str([c.id for c in failing][:6])[:-1] in msg and "DefaultCPUAllocator" in msg
    # the oracle: the largest max_duration on a fine grid whose sampled batches all stay under the limit
    grid = [0.65 + 0.01 * i for i in range(336)]  # 0.65 to 4.0 s
    ok = [m for m in grid if all(_padded_frames(b) <= limit for b in scan.sample(m))]
    best = float(msg.split("fits is about ")[1].split(" s")[0])
    assert abs(best - max(ok)) <= 0.05 + 0.01  # the tolerance, the grid's step
    assert f"use data.max_duration={0.9 * best:.2f}"[:-1] in msg  # 3 significant digits


def test_the_finder_bisects_on_the_scan():
    step, _ = _fake_oom_step(250)
    scan = _sampler_scan(step)
    best = find_max_duration(scan, 0.5, 8.0, tolerance=0.05)
    assert scan.fits(best) and not scan.fits(best + 0.3)
    assert all(_padded_frames(b) <= 250 for b in pessimistic_batches(scan.sample(best)).values())


def test_a_scan_that_fits_measures_peak_memory_and_honours_a_limit():
    model = tiny_model(0.0)
    loss = LossConfig(prune_range=3, warm_step=2)

    def step(batch):
        forward_backward(model, batch, loss, CPU, "none")

    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    reports = _sampler_scan(step, model=model).run(1.5)
    assert [r.criterion for r in reports] and all(r.fits for r in reports)
    assert all(r.peak_bytes > 10 * 2**20 for r in reports)  # a python process with torch: tens of MiB at least
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # BatchNorm statistics put back
    assert torch.equal(torch.get_rng_state(), rng) and all(p.grad is None for p in model.parameters())
    over = _sampler_scan(step, model=model, memory_limit_bytes=2**20).run(1.5)
    assert not over[0].fits and "over the limit of 0.00 GiB" in over[0].error and len(over) == 1


def test_the_scan_runs_by_default_on_cuda_only():
    assert scan_wanted(None, torch.device("cuda")) and not scan_wanted(None, CPU)
    assert scan_wanted(True, CPU) and not scan_wanted(False, torch.device("cuda"))


# ------------------------------------------------------------------------ the finder and the trainer's hook, end to end
from tests.train.test_entry import _train, prepared  # noqa: E402,F401  (the tiny prepared corpus, module-scoped)

TINY = ["model=conformer_small", "model.vocab_size=34", "model.encoder.d_model=16", "model.encoder.num_heads=2",
        "model.encoder.ff_dim=32", "model.encoder.num_layers=1", "model.decoder.decoder_dim=16",
        "model.joiner.joiner_dim=16", "data=demo", "data.num_buckets=2", "data.num_workers=0", "trainer=demo",
        "trainer.amp=none"]  # fmt: skip


def test_find_batch_size_on_cpu_with_a_memory_limit(prepared, capsys, caplog):  # noqa: F811
    import logging

    from asr.train.find_batch_size import main

    caplog.set_level(logging.INFO, logger="asr.train")

    data = [f"data.manifest_dir={prepared / 'fbank'}", f"data.bpe_model={prepared / 'lang' / 'bpe.model'}"]
    best = main(["--memory-limit-gb", "64", "--high", "20", "--tolerance", "2", *TINY, *data])
    out = capsys.readouterr().out
    assert best == 20.0 and "20 s (the upper bound: raise --high" in out
    assert out.strip().splitlines()[-1] == "data.max_duration=18"
    assert main(["--memory-limit-gb", "0.01", "--high", "20", "--tolerance", "2", *TINY, *data]) is None
    out = capsys.readouterr().out
    assert "not even data.max_duration=1 fits on cpu, precision none, limit 0.01 GiB" in out
    assert "does not fit: peak" in caplog.text and "over the limit of 0.01 GiB" in caplog.text  # measured


def test_training_scans_before_its_first_batch_when_asked(prepared, tmp_path, python_exe):  # noqa: F811
    run = _train(prepared, tmp_path / "exp", python_exe, "trainer.max_steps=1", "trainer.scan_oom=true")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "memory scan: the most demanding batches at data.max_duration=8 fit, peak" in run.stdout
    assert "memory scan at max_duration=8: the most_padded batch" in run.stdout
