"""Step 2 of the GPU check: the transducer losses at k2's benchmark shape.

k2's benchmark (csukuangfj/transducer-loss-benchmarking, 2022, on its authors' GPU): batches of 30 train-clean-100
utterances (unsorted) or of at most 10k encoder frames (sorted by length), V = 500, encoder and decoder outputs of
dim 512, joiner tanh + Linear(512, 500). Its pruned step: rnnt_loss_smoothed on the raw 512-dim outputs
(lm_only_scale 0.25, am_only_scale 0, with return_grad), get_rnnt_prune_ranges (s_range 5), do_rnnt_pruning,
the joiner on the band, rnnt_loss_pruned and the backward of the pruned loss. Published: pruned 63.4 ms /
3820 MB (unsorted); 38 ms / 2.6 GB (sorted); torchaudio's full loss 544 ms / 18.9 GB (unsorted).

Paths timed here, each on the same batches:
  pruned       asr.loss, the step above, exactly as k2's benchmark runs it;
  torchaudio   the joiner on the whole (B, T, U + 1) lattice, torchaudio.functional.rnnt_loss, backward;
  asr_full     the same lattice through asr.loss.rnnt_loss (our full-lattice loss), backward; its loss must equal
               torchaudio's (checked: relative difference in the table).
"""

from __future__ import annotations

import torch

from bench.gpu import workload

# k2's published figures on its GPU, for the table: (median-ish average step ms, peak MB)
K2_PUBLISHED = {
    ("pruned", "unsorted"): (63.4, 3820.3),
    ("pruned", "sorted"): (38.0, 2600.0),
    ("torchaudio", "unsorted"): (544.2, 18921.8),
}


def _inputs(utts, V: int, D: int, device: torch.device, seed: int):
    """enc (B, T, D), dec (B, U + 1, D) uniform in [0, 1) as k2's benchmark, symbols (B, U), boundary (B, 4)."""
    g = torch.Generator().manual_seed(seed)
    T = torch.tensor([u.T for u in utts])
    U = torch.tensor([u.U for u in utts])
    B = len(utts)
    enc = torch.rand(B, int(T.max()), D, generator=g).to(device).requires_grad_()
    dec = torch.rand(B, int(U.max()) + 1, D, generator=g).to(device).requires_grad_()
    symbols = torch.randint(1, V, (B, int(U.max())), generator=g).to(device)
    zeros = torch.zeros(B, dtype=torch.int64)
    boundary = torch.stack([zeros, zeros, U, T], dim=1).to(device)
    return enc, dec, symbols, boundary


def run(device: torch.device, profile: dict, emit) -> None:
    """Times the three paths on unsorted and sorted batches; emits one row per (batching, path)."""
    import torchaudio

    import asr.loss as L

    V, D = profile["loss_vocab"], profile["loss_dim"]
    torch.manual_seed(0)
    joiner = torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Linear(D, V)).to(device)
    pool = workload.utterance_pool(profile["pool"], seed=1, scale=profile["scale"])
    warmup, runs = profile["loss_warmup"], profile["loss_batches"]
    batchings = {
        "unsorted": workload.fixed_batches(pool, profile["loss_batch"]),
        "sorted": workload.sorted_batches(pool, profile["loss_max_frames"]),
    }
    for batching, batches in batchings.items():
        # the sorted batches run from the longest, the worst case for memory, without the short remainder batch;
        # cycle if there are too few
        if batching == "sorted":
            batches = (batches[:-1] if len(batches) > 1 else batches)[::-1]
        batches = [batches[i % len(batches)] for i in range(warmup + runs)]
        inputs = [_inputs(b, V, D, device, seed=i) for i, b in enumerate(batches)]
        losses: dict[str, list[float]] = {}

        def pruned(i: int) -> None:
            enc, dec, symbols, boundary = inputs[i]
            enc.grad = dec.grad = None
            _, (px_grad, py_grad) = L.rnnt_loss_smoothed(
                lm=dec, am=enc, symbols=symbols, termination_symbol=0, lm_only_scale=0.25, am_only_scale=0.0,
                boundary=boundary, reduction="sum", return_grad=True)  # fmt: skip
            ranges = L.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range=5)  # (B, T, S)
            am_pruned, lm_pruned = L.do_rnnt_pruning(enc, dec, ranges)  # (B, T, S, D) each
            logits = joiner(am_pruned + lm_pruned)  # (B, T, S, V)
            loss = L.rnnt_loss_pruned(logits, symbols, ranges, 0, boundary, reduction="sum")
            loss.backward()
            losses.setdefault("pruned", []).append(float(loss))

        def lattice(i: int):
            enc, dec, symbols, boundary = inputs[i]
            enc.grad = dec.grad = None
            return joiner(enc.unsqueeze(2) + dec.unsqueeze(1)), symbols, boundary  # (B, T, U + 1, V)

        def torchaudio_full(i: int) -> None:
            logits, symbols, boundary = lattice(i)
            loss = torchaudio.functional.rnnt_loss(
                logits, symbols.int(), boundary[:, 3].int(), boundary[:, 2].int(), blank=0, reduction="sum")
            loss.backward()
            losses.setdefault("torchaudio", []).append(float(loss))

        def asr_full(i: int) -> None:
            logits, symbols, boundary = lattice(i)
            loss = L.rnnt_loss(logits, symbols, 0, boundary=boundary, reduction="sum")
            loss.backward()
            losses.setdefault("asr_full", []).append(float(loss))

        for path, fn in (("pruned", pruned), ("torchaudio", torchaudio_full), ("asr_full", asr_full)):
            workload.reset_peak(device)
            row = {"batching": batching, "path": path,
                   "mean_B": sum(len(b) for b in batches) / len(batches),
                   "mean_T": sum(max(u.T for u in b) for b in batches) / len(batches),
                   "mean_U": sum(max(u.U for u in b) for b in batches) / len(batches)}  # fmt: skip
            try:
                row.update(workload.time_steps(fn, device, warmup, runs))
                row["peak_mem_gb"] = workload.peak_gb(device)
                row["status"] = "ok"
            except torch.OutOfMemoryError as e:
                row.update(status="failed", error=f"out of memory: {str(e)[:200]}")
            except Exception as e:  # one path failing must not lose the others
                row.update(status="failed", error=f"{type(e).__name__}: {str(e)[:300]}")
            k2 = K2_PUBLISHED.get((path, batching))
            row["k2_published_ms"], row["k2_published_mem_gb"] = (k2[0], k2[1] / 1000) if k2 else (None, None)
            if path == "asr_full" and losses.get("torchaudio") and losses.get("asr_full"):
                a, b = losses["torchaudio"], losses["asr_full"]
                row["rel_diff_vs_torchaudio"] = max(abs(x - y) / max(abs(x), 1.0) for x, y in zip(a, b))
                if row["rel_diff_vs_torchaudio"] > 1e-4:
                    row.update(status="failed", error="asr.loss.rnnt_loss differs from torchaudio's rnnt_loss")
            emit(row)
            del row
        del inputs
        workload.reset_peak(device)
