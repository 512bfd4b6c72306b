"""Word error rate from kaldialign alignments, and the three result files icefall's decode scripts write.

Files written for a test set `<set>` decoded with `<method>`:
    recogs-<set>-<method>.txt       ref and hyp of every cut
    errs-<set>-<method>.txt         WER, per-utterance alignments, most frequent substitutions/deletions/insertions
    wer-summary-<set>-<method>.txt  one line per decoding setting: its WER
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import kaldialign

# Placeholder for the missing side of an insertion or deletion in an alignment (kaldialign's eps symbol).
EPS = "*"


@dataclass(frozen=True)
class Result:
    """One decoded utterance: its cut id and its reference and hypothesis as word lists."""

    cut_id: str
    ref: list[str]
    hyp: list[str]


@dataclass
class ErrorStats:
    """Edit counts summed over utterances."""

    ref_words: int = 0
    insertions: int = 0
    deletions: int = 0
    substitutions: int = 0

    @property
    def errors(self) -> int:
        return self.insertions + self.deletions + self.substitutions

    @property
    def wer(self) -> float:
        """Word error rate in percent; 0 for an empty reference with no insertions, inf with insertions."""
        if self.ref_words == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.ref_words


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str, str]]:
    """Minimum-edit alignment of two word lists; a missing word on either side is EPS."""
    for word in (*ref, *hyp):
        if word == EPS:
            raise ValueError(f"the word {EPS!r} is reserved for alignments and cannot appear in ref or hyp")
    return kaldialign.align(list(ref), list(hyp), EPS)


def count_errors(alignment: Sequence[tuple[str, str]]) -> ErrorStats:
    """Edit counts of one alignment from `align`."""
    stats = ErrorStats()
    for r, h in alignment:
        if r == EPS:
            stats.insertions += 1
        elif h == EPS:
            stats.deletions += 1
            stats.ref_words += 1
        else:
            stats.ref_words += 1
            stats.substitutions += int(r != h)
    return stats


def compute_wer(results: Sequence[Result]) -> ErrorStats:
    """Edit counts summed over all results."""
    total = ErrorStats()
    for res in results:
        s = count_errors(align(res.ref, res.hyp))
        total.ref_words += s.ref_words
        total.insertions += s.insertions
        total.deletions += s.deletions
        total.substitutions += s.substitutions
    return total


def write_recogs(path: Path | str, results: Sequence[Result]) -> None:
    """Two lines per cut, sorted by cut id: `<cut_id>:\\tref=[...]` and `<cut_id>:\\thyp=[...]`."""
    with open(path, "w", encoding="utf-8") as f:
        for res in sorted(results, key=lambda r: r.cut_id):
            f.write(f"{res.cut_id}:\tref={res.ref}\n")
            f.write(f"{res.cut_id}:\thyp={res.hyp}\n")


def write_errs(path: Path | str, results: Sequence[Result], top_k: int | None = None) -> ErrorStats:
    """WER, per-utterance alignments and the most frequent errors (all of them when `top_k` is None).

    Returns the summed edit counts written at the top of the file.
    """
    subs: Counter[tuple[str, str]] = Counter()
    dels: Counter[str] = Counter()
    ins: Counter[str] = Counter()
    total = ErrorStats()
    lines = []
    for res in sorted(results, key=lambda r: r.cut_id):
        ali = align(res.ref, res.hyp)
        s = count_errors(ali)
        total.ref_words += s.ref_words
        total.insertions += s.insertions
        total.deletions += s.deletions
        total.substitutions += s.substitutions
        words = []
        for r, h in ali:
            if r == h:
                words.append(r)
            else:
                words.append(f"({r}->{h})")
                if r == EPS:
                    ins[h] += 1
                elif h == EPS:
                    dels[r] += 1
                else:
                    subs[(r, h)] += 1
        lines.append(f"{res.cut_id}:\t{' '.join(words)}")

    with open(path, "w", encoding="utf-8") as f:
        f.write(
            f"%WER {total.wer:.2f} [ {total.errors} / {total.ref_words}, {total.insertions} ins, "
            f"{total.deletions} del, {total.substitutions} sub ]\n\n"
        )
        f.write("PER-UTT DETAILS: corr or (ref->hyp)\n")
        f.write("\n".join(lines) + "\n\n")
        f.write("SUBSTITUTIONS: count ref -> hyp\n")
        for (r, h), n in subs.most_common(top_k):
            f.write(f"{n}   {r} -> {h}\n")
        f.write("\nDELETIONS: count ref\n")
        for w, n in dels.most_common(top_k):
            f.write(f"{n}   {w}\n")
        f.write("\nINSERTIONS: count hyp\n")
        for w, n in ins.most_common(top_k):
            f.write(f"{n}   {w}\n")
    return total


def write_wer_summary(path: Path | str, wers: dict[str, float]) -> None:
    """One line per decoding setting, best (lowest WER) first."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("settings\tWER\n")
        for name, wer in sorted(wers.items(), key=lambda kv: kv[1]):
            f.write(f"{name}\t{wer:.2f}\n")


def write_results(
    out_dir: Path | str, test_set: str, method: str, results: Sequence[Result], setting: str = ""
) -> ErrorStats:
    """Writes the recogs, errs and wer-summary files of one test set and method; returns its edit counts.

    `setting` names the line of the summary (e.g. "modified_beam_search_beam_4_epoch-30-avg-9"; default: method).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_recogs(out_dir / f"recogs-{test_set}-{method}.txt", results)
    stats = write_errs(out_dir / f"errs-{test_set}-{method}.txt", results)
    write_wer_summary(out_dir / f"wer-summary-{test_set}-{method}.txt", {setting or method: stats.wer})
    return stats
