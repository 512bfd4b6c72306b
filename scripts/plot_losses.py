#!/usr/bin/env python3
"""Export the loss curves of a training run's tensorboard logs to a PNG.

    python scripts/plot_losses.py EXP_DIR/tensorboard EXP_DIR/loss.png [--tags train/total_loss,valid/total_loss]

By default every scalar tag whose name contains "loss" is drawn, one line each, against the training step.
"""

import argparse
import sys
from pathlib import Path


def read_scalars(log_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """All scalar series in the event files under `log_dir`, as {tag: (steps, values)}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, tuple[list[int], list[float]]] = {}
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            steps, values = series.setdefault(tag, ([], []))
            for ev in acc.Scalars(tag):
                steps.append(ev.step)
                values.append(ev.value)
    # a resumed run appends to new event files: keep one value per step, in step order
    for tag, (steps, values) in series.items():
        merged = dict(zip(steps, values))
        series[tag] = (sorted(merged), [merged[s] for s in sorted(merged)])
    return series


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--tags", default="", help="comma-separated scalar tags (default: every tag containing 'loss')")
    args = ap.parse_args(argv)
    if not args.log_dir.is_dir():
        print(f"plot_losses: no tensorboard directory {args.log_dir}", file=sys.stderr)
        return 1
    series = read_scalars(args.log_dir)
    wanted = [t for t in args.tags.split(",") if t] or sorted(t for t in series if "loss" in t)
    missing = [t for t in wanted if t not in series]
    if not wanted or missing:
        print(f"plot_losses: tags not found {missing or '(none with loss)'}; have {sorted(series)}", file=sys.stderr)
        return 1

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for tag in wanted:
        steps, values = series[tag]
        ax.plot(steps, values, label=tag, marker="o" if len(steps) < 30 else None, markersize=3)
    ax.set_xlabel("training step (batches)")
    ax.set_ylabel("loss per frame")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(str(args.log_dir.parent.name))
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out} ({', '.join(wanted)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
