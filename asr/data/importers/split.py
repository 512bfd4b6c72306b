"""A seeded dev/test split of a set, disjoint by speaker (by utterance when there are no speakers)."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from lhotse import SupervisionSegment

from asr.data.importers.config import SplitConfig

#: Fewer groups than this and the held-out sets would take (nearly) all speakers: split by utterance instead.
MIN_SPEAKERS = 3


def _group_key(sup: SupervisionSegment, by_speaker: bool) -> str:
    return sup.speaker if by_speaker and sup.speaker else f"utt:{sup.id}"


def split_supervisions(sups: list[SupervisionSegment], cfg: SplitConfig
                       ) -> tuple[dict[str, list[SupervisionSegment]], dict]:
    """{"train", "dev", "test"} -> supervisions, and a description of the split for the report.

    Groups are speakers (an utterance without a speaker is its own group) when at least MIN_SPEAKERS speakers
    exist, else single utterances. The groups are sorted, shuffled with `cfg.seed`, and dealt to test, then dev,
    until each holds its fraction of the utterances (at least one group when its fraction is above 0); the rest
    is train. Deterministic for a seed and the set of ids, whatever order they come in.
    """
    speakers = {s.speaker for s in sups if s.speaker}
    by_speaker = len(speakers) >= MIN_SPEAKERS
    groups: dict[str, list[SupervisionSegment]] = defaultdict(list)
    for s in sups:
        groups[_group_key(s, by_speaker)].append(s)
    keys = sorted(groups)
    # A per-key hash under the seed, not Random.shuffle of the list: adding one group moves no other.
    rank = {k: hashlib.sha256(f"{cfg.seed}\0{k}".encode()).hexdigest() for k in keys}
    keys.sort(key=rank.__getitem__)
    total = len(sups)
    out: dict[str, list[SupervisionSegment]] = {"train": [], "dev": [], "test": []}
    i = 0
    for name, fraction in (("test", cfg.test_fraction), ("dev", cfg.dev_fraction)):
        if fraction <= 0:
            continue
        target = fraction * total
        while i < len(keys) - 1 and (not out[name] or len(out[name]) + len(groups[keys[i]]) / 2 <= target):
            out[name].extend(groups[keys[i]])
            i += 1
    for k in keys[i:]:
        out["train"].extend(groups[k])
    for v in out.values():
        v.sort(key=lambda s: s.id)
    info = {"by": "speaker" if by_speaker else "utterance", "seed": cfg.seed,
            "dev_fraction": cfg.dev_fraction, "test_fraction": cfg.test_fraction,
            "utterances": {k: len(v) for k, v in out.items()},
            "speakers": {k: len({s.speaker for s in v if s.speaker}) for k, v in out.items()}}
    if not by_speaker:
        info["why"] = (f"{len(speakers)} speaker(s), fewer than {MIN_SPEAKERS}" if speakers
                       else "no speaker information")
    return out, info


