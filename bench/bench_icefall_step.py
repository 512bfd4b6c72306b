"""conformer_l12's training step against icefall's own pruned_transducer_stateless step, on the same batch.

    git clone https://github.com/k2-fsa/icefall ../icefall        # any recent checkout; nothing is installed
    .venv/bin/python bench/bench_icefall_step.py --icefall ../icefall --rounds 3

icefall's side is its code as it is: egs/librispeech/ASR/pruned_transducer_stateless (v1: Conformer with
d_model 512, 8 heads, feed-forward 2048, 12 layers, the encoder projecting to the vocabulary, the stateless decoder,
its Joiner; 84,514,780 parameters at V = 500), its `Noam` optimiser (torch's Adam inside) and its loss weights
(0.5 x simple + pruned, prune range 5, lm_scale 0.25), built as its train.py builds them. k2 does not install with
a current torch, so its four loss functions come from fast_rnnt (k2's own loss code under the same names; built by
scripts/setup.sh --test) through a small `k2` stand-in, with a two-axis RaggedTensor that does what the model's
forward asks of it; the few helpers its model imports from icefall.utils (make_pad_mask, add_sos, ...) are
stood in for the same way when icefall's package does not import (it needs k2). Our side is
`bench/bench_train_step.py`'s tree worker: conformer_l12 with the trainer's Adam.

The batch is the pruned RNN-T paper's (bench_train_step.py --paper): 8 x 1000 x 80 random fbank, 60 random labels
each, V = 500, fp32, --threads threads. Each model runs in its own process; they take turns step by step after
--warmup steps each. Prints the median step times and their ratio, peak RSS and peak live memory (malloc's in-use
bytes) of each process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPE = Path("egs") / "librispeech" / "ASR" / "pruned_transducer_stateless"


def _stand_in_k2() -> None:
    """A `k2` module with k2's loss functions from fast_rnnt and a two-axis RaggedTensor."""
    import fast_rnnt
    import torch

    class _Shape:
        def __init__(self, row_splits: torch.Tensor) -> None:
            self._row_splits = row_splits

        def row_splits(self, axis: int) -> torch.Tensor:
            assert axis == 1
            return self._row_splits

    class RaggedTensor:
        """[utt][label] lists; what Transducer.forward and icefall's add_sos use."""

        def __init__(self, rows: list[list[int]]) -> None:
            self.rows = [list(map(int, r)) for r in rows]
            self.num_axes = 2
            self.dim0 = len(self.rows)
            lens = torch.tensor([0] + [len(r) for r in self.rows])
            self.shape = _Shape(torch.cumsum(lens, 0))

        def tolist(self) -> list[list[int]]:
            return [list(r) for r in self.rows]

        def pad(self, mode: str = "constant", padding_value: int = 0) -> torch.Tensor:
            assert mode == "constant"
            width = max((len(r) for r in self.rows), default=0)
            return torch.tensor([r + [padding_value] * (width - len(r)) for r in self.rows], dtype=torch.int32)

    k2 = types.ModuleType("k2")
    k2.RaggedTensor = RaggedTensor
    for name in ("rnnt_loss_smoothed", "get_rnnt_prune_ranges", "do_rnnt_pruning", "rnnt_loss_pruned"):
        setattr(k2, name, getattr(fast_rnnt, name))
    sys.modules["k2"] = k2


def _stand_in_icefall_utils() -> None:
    """The helpers icefall's model and conformer import from icefall.utils, to their documented semantics."""
    import torch

    utils = types.ModuleType("icefall.utils")

    def make_pad_mask(lengths: torch.Tensor, max_len: int = 0, pad_left: bool = False) -> torch.Tensor:
        n = max(max_len, int(lengths.max()))
        idx = torch.arange(n, device=lengths.device).unsqueeze(0)
        if pad_left:
            return idx < (n - lengths).unsqueeze(1)
        return idx >= lengths.unsqueeze(1)

    def add_sos(ragged, sos_id: int):
        return type(ragged)([[sos_id] + r for r in ragged.tolist()])

    def is_jit_tracing() -> bool:
        return not torch.jit.is_scripting() and torch.jit.is_tracing()

    def subsequent_chunk_mask(*args, **kwargs):
        raise NotImplementedError("streaming (chunked) training is not benchmarked")

    for fn in (make_pad_mask, add_sos, is_jit_tracing, subsequent_chunk_mask):
        setattr(utils, fn.__name__, fn)
    package = types.ModuleType("icefall")
    package.utils = utils
    sys.modules["icefall"], sys.modules["icefall.utils"] = package, utils


def icefall_worker(args: argparse.Namespace) -> None:
    """icefall's model, optimiser and step in this process; answers "step", "rss", "quit" on stdin (JSON lines)."""
    import torch

    sys.path.insert(0, str(HERE))
    from bench_train_step import LivePeak, fixed_batch

    live = LivePeak()
    try:
        import k2  # noqa: F401
    except ImportError:
        _stand_in_k2()
    try:
        import icefall.utils  # noqa: F401
    except ImportError:
        _stand_in_icefall_utils()
    sys.path.insert(0, str(args.icefall / RECIPE))
    from conformer import Conformer
    from decoder import Decoder
    from joiner import Joiner
    from model import Transducer
    from transformer import Noam

    import k2

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    vocab = 500
    encoder = Conformer(num_features=80, output_dim=vocab, subsampling_factor=4, d_model=512, nhead=8,
                        dim_feedforward=2048, num_encoder_layers=12, dropout=args.dropout, vgg_frontend=False)
    decoder = Decoder(vocab_size=vocab, embedding_dim=512, blank_id=0, unk_id=2, context_size=2)
    joiner = Joiner(input_dim=vocab, inner_dim=512, output_dim=vocab)
    model = Transducer(encoder=encoder, decoder=decoder, joiner=joiner).train()
    optimizer = Noam(model.parameters(), model_size=512, factor=5.0, warm_step=80000)
    args.paper, args.vocab_size = True, vocab
    x, x_lens, y, y_lens = fixed_batch(args)
    labels = k2.RaggedTensor([row[:n].tolist() for row, n in zip(y, y_lens)])

    def step() -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        simple_loss, pruned_loss = model(x, x_lens, labels, prune_range=5, am_scale=0.0, lm_scale=0.25)
        loss = 0.5 * simple_loss + pruned_loss  # icefall's simple_loss_scale
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        after = resource.getrusage(resource.RUSAGE_SELF)
        return dict(seconds=time.perf_counter() - start, loss=float(loss.detach()),
                    cpu=after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime)

    print(json.dumps(dict(parameters=sum(p.numel() for p in model.parameters()))), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "step":
            print(json.dumps(step()), flush=True)
        elif command == "rss":
            print(json.dumps(dict(peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                  peak_live_mb=live.peak_mb)), flush=True)
        elif command == "quit":
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--icefall", type=Path, required=True, help="an icefall checkout's root")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.0, help="both encoders' dropout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.icefall = args.icefall.resolve()
    if args.worker:
        icefall_worker(args)
        return
    if not (args.icefall / RECIPE / "model.py").is_file():
        raise SystemExit(f"--icefall {args.icefall}: no {RECIPE}/model.py there (clone k2-fsa/icefall)")
    root = HERE.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    ours = [sys.executable, str(HERE / "bench_train_step.py"), "--compare", "tree", "--paper", "--worker",
            "--threads", str(args.threads), "--dropout", str(args.dropout), "--seed", str(args.seed)]
    theirs = [sys.executable, str(Path(__file__).resolve()), "--icefall", str(args.icefall), "--worker",
              "--threads", str(args.threads), "--dropout", str(args.dropout), "--seed", str(args.seed)]
    workers = {label: subprocess.Popen(cmd, env=env, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True)
               for label, cmd in (("asr", ours), ("icefall", theirs))}

    sys.path.insert(0, str(HERE))
    from bench_train_step import ask_worker

    def ask(label: str, command: str) -> dict:
        return ask_worker(workers[label], label, command)

    info = {label: json.loads(proc.stdout.readline()) for label, proc in workers.items()}
    times: dict[str, list[float]] = {label: [] for label in workers}
    try:
        for i in range(args.warmup + args.rounds):
            for label in ("asr", "icefall") if i % 2 == 0 else ("icefall", "asr"):
                r = ask(label, "step")
                print(f"step {i} {label}: {r['seconds']:.2f} s, CPU {r['cpu']:.2f} s, loss {r['loss']:.2f}",
                      flush=True)
                if i >= args.warmup:
                    times[label].append(r["seconds"])
        memory = {label: ask(label, "rss") for label in workers}
    finally:
        for proc in workers.values():
            proc.stdin.write("quit\n")
            proc.stdin.close()
            proc.wait()
    import torch

    print(f"\nbatch 8 x 1000 x 80, U = 60, V = 500, fp32, dropout {args.dropout}, {args.threads} threads, CPU "
          f"capability {torch.backends.cpu.get_cpu_capability()}, {args.rounds} alternated rounds after "
          f"{args.warmup} warm-up")
    print("| code | parameters | median step s | peak RSS MB | peak live MB |")
    print("|---|---|---|---|---|")
    for label in ("icefall", "asr"):
        print(f"| {label} | {info[label]['parameters']:,} | {statistics.median(times[label]):.2f} | "
              f"{memory[label]['peak_rss_mb']:.0f} | {memory[label]['peak_live_mb']:.0f} |")
    ratios = [a / b for a, b in zip(times["asr"], times["icefall"])]
    print(f"asr / icefall step time: per round {', '.join(f'{r:.3f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
