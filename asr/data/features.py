"""80-dim fbank features of the cut manifests, with speed perturbation for training (prepare.sh stages 2 and 3).

    python -m asr.data.features --manifests data/manifests --out data/fbank [--subsets ...] [--jobs 2]
    python -m asr.data.features --manifests data/manifests --out data/fbank --musan

Cuts are processed in fixed chunks, each written to its own `LilcomChunkyWriter` file with its cut list saved
beside it, so an interrupted run resumes without recomputing finished chunks. A cut whose audio cannot be decoded
is skipped with a warning and counted; the others are kept. Training subsets (names starting with "train") get
speed-perturbed copies (factors 0.9 and 1.1: ids ending `_sp0.9`/`_sp1.1`), and all training cuts are combined and
shuffled into `librispeech_cuts_train-all-shuf.jsonl.gz` (icefall's names; `--prefix P` names them `P_*` instead).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import multiprocessing as mp
import os
import random
from collections import Counter
from pathlib import Path

from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, load_manifest, load_manifest_lazy
from lhotse.qa import validate
from tqdm import tqdm

from asr.data.prepare import PREFIX, SkipCounter, manifest_name

log = logging.getLogger(__name__)

SPEED_FACTORS = (0.9, 1.1)  # icefall's speed perturbation: 3x the training data
CHUNK_CUTS = 200  # cuts per storage file (the unit of resumption and of parallel work)
TRAIN_ALL = manifest_name("cuts", "train-all-shuf")
SHUFFLE_SEED = 42
MUSAN_WINDOW = 10.0  # MUSAN recordings cut into 10 s windows, windows under 5 s dropped (icefall)
MUSAN_MIN = 5.0
BAD_AUDIO = "audio that could not be decoded"


def _extract_chunk(job: tuple[list, str, int]) -> tuple[list[dict], list[tuple[str, str]]]:
    """Features of one chunk of cuts into `storage`; (cut dicts with features, [(failed cut id, error)])."""
    import torch

    torch.set_num_threads(1)
    cuts, storage, num_mel_bins = job
    extractor = Fbank(FbankConfig(num_filters=num_mel_bins))
    done, failed = [], []
    tmp = storage[: -len(".lca")] + ".tmp.lca"  # the writer insists on the .lca suffix
    with LilcomChunkyWriter(tmp) as writer:
        for cut in cuts:
            try:
                done.append(cut.compute_and_store_features(extractor, writer).to_dict())
            except Exception as e:  # a broken file: skip it, keep the rest
                failed.append((cut.id, f"{type(e).__name__}: {e}"[:200]))
    for d in done:
        d["features"]["storage_path"] = storage
    os.replace(tmp, storage)
    return done, failed


def compute_features(cuts: CutSet, out_dir: Path, name: str, num_jobs: int = 1, num_mel_bins: int = 80,
                     chunk_size: int = CHUNK_CUTS) -> tuple[CutSet, SkipCounter]:
    """Fbank of every cut, stored under `out_dir/<name>_feats/`; returns the cuts with features and the skips.

    Finished chunks (storage file + `.json` list) are re-used, so a re-run after a crash only does the rest.
    """
    feats_dir = out_dir / f"{name}_feats"
    feats_dir.mkdir(parents=True, exist_ok=True)
    cuts = sorted(cuts, key=lambda c: c.id)
    chunks = [cuts[i:i + chunk_size] for i in range(0, len(cuts), chunk_size)]
    skipped = SkipCounter(name)
    results: dict[int, list[dict]] = {}
    todo = []
    for k, chunk in enumerate(chunks):
        listing = feats_dir / f"feats-{k}.json"
        if listing.exists():
            saved = json.loads(listing.read_text())
            if saved["ids"] == [c.id for c in chunk]:
                results[k] = saved["cuts"]
                for cut_id, err in saved["failed"]:
                    skipped.skip(BAD_AUDIO, f"{cut_id}: {err}")
                continue
        todo.append(k)
    jobs = [(chunks[k], str(feats_dir / f"feats-{k}.lca"), num_mel_bins) for k in todo]
    bar = tqdm(total=sum(len(chunks[k]) for k in todo), desc=f"fbank {name}", unit="cut", disable=not todo)
    ctx = mp.get_context("fork")
    with ctx.Pool(max(1, min(num_jobs, len(jobs) or 1))) as pool:
        for k, (done, failed) in zip(todo, pool.imap(_extract_chunk, jobs)):
            (feats_dir / f"feats-{k}.json").write_text(
                json.dumps({"ids": [c.id for c in chunks[k]], "cuts": done, "failed": failed}))
            results[k] = done
            for cut_id, err in failed:
                skipped.skip(BAD_AUDIO, f"{cut_id}: {err}")
            bar.update(len(chunks[k]))
    bar.close()
    out = CutSet.from_dicts([d for k in range(len(chunks)) for d in results[k]])
    return out, skipped


def subset_cuts(manifest_dir: Path, subset: str, speed_perturb: bool, prefix: str = PREFIX) -> CutSet:
    """Cuts of a subset from its recording/supervision manifests, plus speed-perturbed copies when asked."""
    recs = load_manifest(manifest_dir / manifest_name("recordings", subset, prefix))
    sups = load_manifest(manifest_dir / manifest_name("supervisions", subset, prefix))
    cuts = CutSet.from_manifests(recordings=recs, supervisions=sups)
    if any(len(c.supervisions) != 1 or c.supervisions[0].start > 0 or c.supervisions[0].end < c.duration - 1e-3
           for c in cuts):  # segments (Kaldi, imported manifests): one cut per supervision, named after it
        cuts = cuts.trim_to_supervisions(keep_overlapping=False)
    # A LibriSpeech cut is one utterance: name it like its supervision (lhotse appends a running index).
    cuts = CutSet.from_cuts(c.with_id(c.supervisions[0].id) if len(c.supervisions) == 1 else c for c in cuts)
    if speed_perturb:
        copies = [cuts.perturb_speed(f) for f in SPEED_FACTORS]  # ids and recording ids get `_sp<factor>`
        cuts = CutSet.from_cuts([c for cs in (cuts, *copies) for c in cs])
    return cuts


def _write_atomic(cuts: CutSet, path: Path) -> None:
    tmp = path.with_name("tmp." + path.name)
    cuts.to_file(tmp)
    os.replace(tmp, path)


def compute_subset(manifest_dir: Path, out_dir: Path, subset: str, num_jobs: int = 1,
                   num_mel_bins: int = 80, perturb_speed: bool = True, prefix: str = PREFIX) -> Counter[str]:
    """`out_dir/<prefix>_cuts_<subset>.jsonl.gz` with features (skipped when it exists); returns skip counts.

    Training subsets get the speed-perturbed copies unless `perturb_speed` is False.
    """
    out_path = out_dir / manifest_name("cuts", subset, prefix)
    if out_path.exists():
        log.info("%s: features already computed", subset)
        return Counter()
    cuts = subset_cuts(manifest_dir, subset, speed_perturb=perturb_speed and subset.startswith("train"),
                       prefix=prefix)
    cuts, skipped = compute_features(cuts, out_dir, f"{prefix}_{subset}", num_jobs, num_mel_bins)
    validate(cuts, read_data=False)
    _write_atomic(cuts, out_path)
    log.info("%s: %d cuts with features, %.2f h", subset, len(cuts), sum(c.duration for c in cuts) / 3600)
    return skipped.counts


def combine_train(out_dir: Path, subsets: list[str], seed: int = SHUFFLE_SEED, prefix: str = PREFIX) -> Path:
    """Shuffle the lines of every training subset's cuts into one file (icefall's `train-all-shuf`)."""
    lines: list[bytes] = []
    for subset in subsets:
        with gzip.open(out_dir / manifest_name("cuts", subset, prefix)) as f:
            lines.extend(line if line.endswith(b"\n") else line + b"\n" for line in f if line.strip())
    random.Random(seed).shuffle(lines)
    path = out_dir / manifest_name("cuts", "train-all-shuf", prefix)
    tmp = path.with_name("tmp." + path.name)
    with gzip.open(tmp, "wb") as f:
        f.writelines(lines)
    os.replace(tmp, path)
    log.info("%s: %d training cuts from %s", path, len(lines), ", ".join(subsets))
    return path


def compute_musan(manifest_dir: Path, out_dir: Path, num_jobs: int = 1, num_mel_bins: int = 80) -> Counter[str]:
    """`out_dir/musan_cuts.jsonl.gz`: 10 s windows of every MUSAN recording, with features."""
    out_path = out_dir / "musan_cuts.jsonl.gz"
    if out_path.exists():
        log.info("MUSAN features already computed")
        return Counter()
    parts = sorted(manifest_dir.glob("musan_recordings_*.jsonl.gz"))
    if not parts:
        raise FileNotFoundError(f"no musan_recordings_*.jsonl.gz in {manifest_dir} (stage 1 with --musan-dir)")
    recs = [r for p in parts for r in load_manifest_lazy(p)]
    from lhotse import RecordingSet

    windows = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs)).cut_into_windows(MUSAN_WINDOW)
    cuts = CutSet.from_cuts(c for c in windows if c.duration > MUSAN_MIN)
    cuts, skipped = compute_features(cuts, out_dir, "musan", num_jobs, num_mel_bins)
    _write_atomic(cuts, out_path)
    log.info("MUSAN: %d cuts with features", len(cuts))
    return skipped.counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifests", type=Path, required=True, help="folder with the stage-1 manifests")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--subsets", nargs="*", help="default: every subset with manifests")
    ap.add_argument("--musan", action="store_true", help="compute the MUSAN features instead")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--num-mel-bins", type=int, default=80)
    ap.add_argument("--prefix", default=PREFIX,
                    help=f"manifests are named <prefix>_<kind>_<subset>.jsonl.gz (default {PREFIX})")
    ap.add_argument("--perturb-speed", choices=("true", "false"), default="true",
                    help="speed-perturbed copies (0.9, 1.1) of the training subsets (icefall's --perturb-speed)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.musan:
        try:
            counts = compute_musan(args.manifests, args.out, args.jobs, args.num_mel_bins)
        except FileNotFoundError as e:
            raise SystemExit(f"asr.data.features: {e}")
        log.info("MUSAN summary: skipped %s", dict(counts) or "nothing")
        return
    prefix = f"{args.prefix}_recordings_"
    subsets = args.subsets or sorted(p.name[len(prefix):-len(".jsonl.gz")]
                                     for p in args.manifests.glob(f"{prefix}*.jsonl.gz"))
    if not subsets:
        raise SystemExit(f"asr.data.features: no {prefix}*.jsonl.gz in {args.manifests} (run stage 1 first)")
    report = {s: compute_subset(args.manifests, args.out, s, args.jobs, args.num_mel_bins, args.perturb_speed == "true",
                                args.prefix) for s in subsets}  # fmt: skip
    train = [s for s in subsets if s.startswith("train")]
    if train:
        combine_train(args.out, train, prefix=args.prefix)
    from asr.data.prepare import summarize

    log.info("feature summary:\n%s", summarize(report))


if __name__ == "__main__":
    main()
