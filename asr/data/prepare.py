"""Manifests of a LibriSpeech-layout corpus, robust to bad input (prepare.sh stage 1).

    python -m asr.data.prepare --corpus download/LibriSpeech --out data/manifests [--subsets ...] [--jobs 2]
    python -m asr.data.prepare --musan download/musan --out data/manifests

Unlike lhotse's `prepare_librispeech`, a bad utterance never stops the run: a transcript line without audio, an
audio file without a transcript line, a zero-length or unreadable audio file and a transcript with non-ASCII text
are each skipped with a warning and counted; the counts are printed at the end and kept in
`<out>/librispeech_skipped_<subset>.json`. The manifests have lhotse's names
(`librispeech_{recordings,supervisions}_<subset>.jsonl.gz`).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

log = logging.getLogger(__name__)

#: LibriSpeech's subsets, in the order they are listed.
LIBRISPEECH_SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
                       "train-other-500")
# Every manifest is named manifest_name(kind, subset, prefix): "librispeech" for the LibriSpeech recipe (icefall's
# names); recipes/custom passes its own (data.manifest_prefix, the --prefix of the data tools).
PREFIX = "librispeech"
MAX_WARNINGS = 20  # per reason and subset; the rest only counted



def manifest_name(kind: str, subset: str, prefix: str = PREFIX) -> str:
    """File name of a manifest: `kind` "recordings", "supervisions" (stage 1) or "cuts" (stage 2, the loaders)."""
    return f"{prefix}_{kind}_{subset}.jsonl.gz"


NO_AUDIO = "transcript line with no audio"
NO_TRANSCRIPT = "audio with no transcript line"
EMPTY_AUDIO = "zero-length audio file"
BAD_AUDIO = "unreadable audio file"
NON_ASCII = "non-ASCII transcript"
NO_TEXT = "transcript line without text"


class SkipCounter:
    """Counts skipped items by reason and warns about the first few of each."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.counts: Counter[str] = Counter()

    def skip(self, reason: str, item: object) -> None:
        self.counts[reason] += 1
        if self.counts[reason] <= MAX_WARNINGS:
            log.warning("%s: skipped (%s): %s", self.what, reason, item)
        elif self.counts[reason] == MAX_WARNINGS + 1:
            log.warning("%s: more items skipped for %s; only counting from now on", self.what, reason)

    def summary(self) -> str:
        if not self.counts:
            return f"{self.what}: nothing skipped"
        return f"{self.what}: skipped " + ", ".join(f"{n} {r}" for r, n in sorted(self.counts.items()))


def find_subsets(corpus_dir: Path) -> list[str]:
    """LibriSpeech subsets present under `corpus_dir` (a folder holding e.g. `train-clean-100/`)."""
    return [s for s in LIBRISPEECH_SUBSETS if (corpus_dir / s).is_dir()]


def _read_recording(path: Path, utt_id: str) -> Recording | str:
    """The recording of `path`, or the reason it cannot be used."""
    if path.stat().st_size == 0:
        return EMPTY_AUDIO
    try:
        rec = Recording.from_file(path, recording_id=utt_id)
    except Exception:  # soundfile / audioread raise many types on a broken file
        return BAD_AUDIO
    if rec.num_samples <= 0:
        return EMPTY_AUDIO
    return rec


def scan_subset(subset_dir: Path, num_jobs: int = 1) -> tuple[RecordingSet, SupervisionSet, SkipCounter]:
    """Recordings and supervisions of one subset folder (`<spk>/<chapter>/<spk>-<chapter>.trans.txt` + FLACs)."""
    skipped = SkipCounter(subset_dir.name)
    entries: list[tuple[str, str, Path]] = []
    referenced: set[Path] = set()
    for trans in sorted(subset_dir.rglob("*.trans.txt")):
        for line_no, raw in enumerate(trans.read_bytes().splitlines(), 1):
            try:
                line = raw.decode("ascii").strip()
            except UnicodeDecodeError:
                skipped.skip(NON_ASCII, f"{trans}:{line_no}")
                utt = raw.split(maxsplit=1)[0].decode("ascii", "replace") if raw.strip() else ""
                referenced.add(trans.parent / f"{utt}.flac")
                continue
            if not line:
                continue
            parts = line.split(maxsplit=1)
            audio = trans.parent / f"{parts[0]}.flac"
            referenced.add(audio)
            if len(parts) < 2:
                skipped.skip(NO_TEXT, f"{trans}:{line_no}")
            elif not audio.is_file():
                skipped.skip(NO_AUDIO, f"{trans}:{line_no} ({audio.name})")
            else:
                entries.append((parts[0], parts[1].strip(), audio))
    for audio in sorted(subset_dir.rglob("*.flac")):
        if audio not in referenced:
            skipped.skip(NO_TRANSCRIPT, audio)

    with ThreadPoolExecutor(max(1, num_jobs)) as ex:
        results = list(ex.map(lambda e: _read_recording(e[2], e[0]), entries))
    recordings, supervisions = [], []
    for (utt_id, text, audio), rec in zip(entries, results):
        if isinstance(rec, str):
            skipped.skip(rec, audio)
            continue
        recordings.append(rec)
        supervisions.append(SupervisionSegment(id=utt_id, recording_id=utt_id, start=0.0, duration=rec.duration,
                                               channel=0, text=text, language="English",
                                               speaker=utt_id.split("-")[0]))
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions), skipped


def prepare_librispeech_manifests(corpus_dir: Path, out_dir: Path, subsets: list[str] | None = None,
                                  num_jobs: int = 1) -> dict[str, Counter[str]]:
    """Write the manifests of each subset (skipping subsets already done); returns the skip counts per subset."""
    subsets = subsets or find_subsets(corpus_dir)
    if not subsets:
        raise FileNotFoundError(f"no LibriSpeech subset ({', '.join(LIBRISPEECH_SUBSETS)}) in {corpus_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {}
    for subset in subsets:
        rec_path = out_dir / manifest_name("recordings", subset)
        sup_path = out_dir / manifest_name("supervisions", subset)
        skip_path = out_dir / f"{PREFIX}_skipped_{subset}.json"
        if rec_path.exists() and sup_path.exists() and skip_path.exists():
            log.info("%s: manifests already made", subset)
            report[subset] = Counter(json.loads(skip_path.read_text()))
            continue
        recs, sups, skipped = scan_subset(corpus_dir / subset, num_jobs)
        if len(recs) == 0:
            log.warning("%s: no usable utterance; no manifest written", subset)
        else:
            sups.to_file(sup_path)
            recs.to_file(rec_path)
            skip_path.write_text(json.dumps(dict(skipped.counts), indent=1))
        log.info("%s: %d utterances, %.2f h", subset, len(recs), sum(r.duration for r in recs) / 3600)
        report[subset] = skipped.counts
    return report


def summarize(report: dict[str, Counter[str]]) -> str:
    """One line per subset with its skip counts (the end-of-stage summary)."""
    lines = []
    for subset, counts in report.items():
        total = sum(counts.values())
        detail = ", ".join(f"{n} {r}" for r, n in sorted(counts.items())) if total else "nothing"
        lines.append(f"  {subset}: skipped {detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="folder holding the LibriSpeech subsets")
    ap.add_argument("--musan", type=Path, help="MUSAN corpus folder (music/, speech/, noise/)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--subsets", nargs="*", help="default: every subset found")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.corpus is not None:
        try:
            report = prepare_librispeech_manifests(args.corpus, args.out, args.subsets, args.jobs)
        except FileNotFoundError as e:
            raise SystemExit(f"asr.data.prepare: {e}")
        log.info("manifest summary:\n%s", summarize(report))
    if args.musan is not None:
        from lhotse.recipes import prepare_musan

        if not args.musan.is_dir():
            raise SystemExit(f"asr.data.prepare: no MUSAN folder at {args.musan}")
        prepare_musan(args.musan, output_dir=args.out)
        log.info("MUSAN manifests in %s", args.out)


if __name__ == "__main__":
    main()
