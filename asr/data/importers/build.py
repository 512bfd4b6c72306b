"""From read sets to written manifests: open the audio, apply the text and duration rules, split, write, report.

    import_corpus(raw_sets, out_dir, cfg, fmt=..., corpus=...) -> report dict

Output in `out_dir` (names of the LibriSpeech path, so asr.data.features / asr.data.bpe and the data loaders read
them unchanged): `librispeech_{recordings,supervisions}_<set>.jsonl.gz` per output set,
plus `import_report.json` (everything: settings, per-set kept and skipped counts with the first
examples of each reason, the split) and `import_report.txt` (the same for a human).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.qa import validate_recordings_and_supervisions

from asr.data.importers.audio import probe
from asr.data.importers.config import ImportConfig
from asr.data.importers.entries import (BAD_SEGMENT, DIGITS, EMPTY_TRANSCRIPT, NO_TRANSCRIPT, TOO_LONG, TOO_SHORT,
                                        RawSet, dedupe, role_of)
from asr.data.importers.split import split_supervisions
from asr.data.importers.text import TextNormalizer
from asr.data.prepare import PREFIX, manifest_name

log = logging.getLogger(__name__)

REPORT_JSON = "import_report.json"
REPORT_TXT = "import_report.txt"
# Segment ends may overshoot the audio by rounding in the corpus files (Kaldi writes 2 decimals).
SEGMENT_TOLERANCE = 0.02


def open_recordings(raw_sets: list[RawSet], cfg: ImportConfig, audio_dir: Path
                    ) -> dict[tuple[str, str], Recording | tuple[str, str]]:
    """(set, recording id) -> Recording or (reason, detail): each recording an entry uses, opened once.

    Keyed by set as well: two Kaldi data dirs may use one recording id for different audio.
    """
    refs = {}
    for raw in raw_sets:
        needed = {e.recording_id for e in raw.entries}
        refs.update({(raw.name, rid): ref for rid, ref in raw.audio.items() if rid in needed})
    keys = sorted(refs)
    with ThreadPoolExecutor(max(1, cfg.jobs)) as ex:
        results = list(ex.map(lambda k: probe(k[1], refs[k], cfg, audio_dir / k[0]), keys))
    return dict(zip(keys, results))


def assemble(raw: RawSet, recordings: dict[tuple[str, str], Recording | tuple[str, str]], cfg: ImportConfig
             ) -> tuple[list[Recording], list[SupervisionSegment]]:
    """The kept recordings and supervisions of one set; everything else goes to `raw.skipped` with its reason."""
    norm = TextNormalizer(cfg.text)
    dedupe(raw)
    sups, used = [], {}
    for e in raw.entries:
        if e.text is None:
            raw.skipped.skip(NO_TRANSCRIPT, e.where or e.id)
            continue
        if cfg.text.numbers == "skip" and norm.has_digits(e.text):
            raw.skipped.skip(DIGITS, f"{e.where}: {e.text[:80]!r}")
            continue
        text = norm(e.text)
        if not text:
            raw.skipped.skip(EMPTY_TRANSCRIPT, e.where or e.id)
            continue
        rec = recordings.get((raw.name, e.recording_id))
        if rec is None:  # a reader bug, not bad input: never drop silently
            raise KeyError(f"{e.where}: recording {e.recording_id!r} of {e.id!r} was never listed")
        if isinstance(rec, tuple):
            reason, detail = rec
            raw.skipped.skip(reason, detail if not e.where or detail.startswith(e.where) else f"{e.where}: {detail}")
            continue
        duration = rec.duration - e.start if e.duration is None else e.duration
        if e.start < 0 or duration <= 0 or e.start + duration > rec.duration + SEGMENT_TOLERANCE:
            raw.skipped.skip(BAD_SEGMENT, f"{e.where}: [{e.start}, {e.start + duration}] of {rec.duration:.3f} s")
            continue
        duration = min(duration, rec.duration - e.start)
        if duration < cfg.min_duration:
            raw.skipped.skip(TOO_SHORT, f"{e.where or e.id}: {duration:.2f} s")
            continue
        if duration > cfg.max_duration:
            raw.skipped.skip(TOO_LONG, f"{e.where or e.id}: {duration:.2f} s")
            continue
        sups.append(SupervisionSegment(id=e.id, recording_id=rec.id, start=round(e.start, 6),
                                       duration=round(duration, 6), channel=0, text=text, speaker=e.speaker))
        used[rec.id] = rec
    return [used[k] for k in sorted(used)], sups


def _write_atomic(manifest, path: Path) -> None:
    tmp = path.with_name("tmp." + path.name)
    manifest.to_file(tmp)
    os.replace(tmp, path)


def write_set(name: str, recs: list[Recording], sups: list[SupervisionSegment], out_dir: Path,
              prefix: str = PREFIX) -> None:
    rec_set = RecordingSet.from_recordings(recs)
    sup_set = SupervisionSet.from_segments(sups)
    validate_recordings_and_supervisions(rec_set, sup_set)
    _write_atomic(rec_set, out_dir / manifest_name("recordings", name, prefix))
    _write_atomic(sup_set, out_dir / manifest_name("supervisions", name, prefix))


def _set_stats(sups: list[SupervisionSegment]) -> dict:
    return {"utterances": len(sups), "hours": round(sum(s.duration for s in sups) / 3600, 4),
            "speakers": len({s.speaker for s in sups if s.speaker})}


def plan_outputs(raw_sets: list[RawSet], kept: dict[str, list[SupervisionSegment]], cfg: ImportConfig
                 ) -> tuple[dict[str, list[SupervisionSegment]], dict | None]:
    """Output sets: the corpus's own, or a seeded split of its only set or of its largest train set.

    One set (whatever its name) is split into train/dev/test. Several sets must each be named train*, dev*
    (valid*, val*) or test* (eval*); a missing dev or test set is split off the largest train set.
    """
    if len(raw_sets) == 1:
        parts, info = split_supervisions(kept[raw_sets[0].name], cfg.split)
        info["from"] = raw_sets[0].name
        return {k: v for k, v in parts.items() if v}, info
    roles = {r.name: role_of(r.name) for r in raw_sets}
    unknown = [n for n, role in roles.items() if role is None]
    if unknown:
        raise ValueError(f"cannot tell whether set(s) {', '.join(unknown)} are for training, dev or test: name them "
                         "train*, dev* (valid*) or test* (eval*), or import one set to have it split")
    train = [n for n, role in roles.items() if role == "train"]
    if not train:
        raise ValueError(f"no training set among {', '.join(roles)} (a set named train*)")
    out = {n: kept[n] for n in roles}
    missing = [r for r in ("dev", "test") if r not in roles.values()]
    if not missing:
        return out, None
    source = max(train, key=lambda n: (len(kept[n]), n))
    fractions = {"dev_fraction": cfg.split.dev_fraction if "dev" in missing else 0.0,
                 "test_fraction": cfg.split.test_fraction if "test" in missing else 0.0}
    from asr.data.importers.config import SplitConfig

    parts, info = split_supervisions(kept[source], SplitConfig(seed=cfg.split.seed, **fractions))
    info["from"] = source
    out[source] = parts["train"]
    for role in missing:
        if parts[role]:
            out[role] = parts[role]
    return out, info


def import_corpus(raw_sets: list[RawSet], out_dir: Path, cfg: ImportConfig, fmt: str = "", corpus: str = "",
                  prefix: str = PREFIX) -> dict:
    """Write the manifests of `raw_sets` into `out_dir`, named <prefix>_{recordings,supervisions}_<set>.jsonl.gz;
    returns the report (also written as JSON and text)."""
    if not raw_sets:
        raise ValueError(f"no data found in {corpus}")
    out_dir.mkdir(parents=True, exist_ok=True)
    recordings = open_recordings(raw_sets, cfg, out_dir.absolute() / "audio")
    kept, rec_of = {}, {}
    for raw in raw_sets:
        recs, sups = assemble(raw, recordings, cfg)
        kept[raw.name] = sups
        rec_of[raw.name] = {r.id: r for r in recs}
    outputs, split_info = plan_outputs(raw_sets, kept, cfg)
    # Output sets split off a read set take their recordings from it.
    source_of = {name: name if name in rec_of else (split_info or {}).get("from") for name in outputs}
    stale = sorted(p.name for p in out_dir.glob(f"{prefix}_recordings_*.jsonl.gz")
                   if p.name[len(prefix) + len("_recordings_"):-len(".jsonl.gz")] not in outputs)
    if stale:
        raise ValueError(f"{out_dir} holds manifests of other sets ({', '.join(stale)}): import into an empty "
                         "folder (the feature stage would take every set it finds)")
    for name, sups in outputs.items():
        recs = [rec_of[source_of[name]][rid] for rid in sorted({s.recording_id for s in sups})]
        write_set(name, recs, sups, out_dir, prefix)
    report = {
        "format": fmt, "corpus": corpus, "settings": asdict(cfg),
        "read": {r.name: {"kept": _set_stats(kept[r.name]), "skipped": dict(sorted(r.skipped.counts.items())),
                          "examples": r.skipped.examples} for r in raw_sets},
        "split": split_info,
        "sets": {n: {"role": role_of(n), **_set_stats(s)} for n, s in outputs.items()},
    }
    total = Counter()
    for r in raw_sets:
        total.update(r.skipped.counts)
    report["kept_total"] = sum(len(s) for s in kept.values())
    report["skipped_total"] = dict(sorted(total.items()))
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    (out_dir / REPORT_TXT).write_text(summary(report))
    return report


def summary(report: dict) -> str:
    """The human-readable import report."""
    lines = [f"import of {report['corpus']} ({report['format']})", ""]
    for name, r in report["read"].items():
        k = r["kept"]
        lines.append(f"read {name}: kept {k['utterances']} utterances ({k['hours']:.3f} h, {k['speakers']} speakers)")
        if r["skipped"]:
            for reason, n in r["skipped"].items():
                lines.append(f"  skipped {n:6d} {reason}")
                lines.extend(f"           e.g. {x}" for x in r["examples"].get(reason, [])[:3])
        else:
            lines.append("  nothing skipped")
    split = report.get("split")
    if split:
        lines += ["", f"split of {split['from']} by {split['by']} (seed {split['seed']})"
                  + (f": {split['why']}" if "why" in split else "")]
    lines += ["", "written sets:"]
    for name, s in report["sets"].items():
        lines.append(f"  {name:<20} {s['role'] or '-':<6} {s['utterances']:7d} utterances {s['hours']:9.3f} h "
                     f"{s['speakers']:5d} speakers")
    lines.append(f"total: kept {report['kept_total']}, skipped {sum(report['skipped_total'].values())}")
    return "\n".join(lines) + "\n"
