import importlib.util
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("plot_losses", ROOT / "scripts/plot_losses.py")
plot_losses = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot_losses)


def test_reads_scalars_across_resumed_event_files_and_writes_png(tmp_path):
    tb = tmp_path / "exp" / "tensorboard"
    for steps in (range(0, 5), range(3, 8)):  # a resumed run rewrites steps 3 and 4 in a second file
        w = SummaryWriter(tb)
        for s in steps:
            w.add_scalar("train/total_loss", 10.0 / (s + 1), s)
        w.add_scalar("train/lr", 1e-3, 0)
        w.close()
    series = plot_losses.read_scalars(tb)
    steps, values = series["train/total_loss"]
    assert steps == list(range(8))
    assert values[7] == 10.0 / 8
    out = tmp_path / "loss.png"
    assert plot_losses.main([str(tb), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_dir_or_tag_fails_cleanly(tmp_path):
    assert plot_losses.main([str(tmp_path / "nope"), str(tmp_path / "x.png")]) == 1
    w = SummaryWriter(tmp_path / "tb")
    w.add_scalar("train/lr", 1.0, 0)
    w.close()
    assert plot_losses.main([str(tmp_path / "tb"), str(tmp_path / "x.png")]) == 1
