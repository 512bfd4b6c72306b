"""Import a corpus into manifests (recipes/custom/prepare.sh stage 0).

    python -m asr.data.importers --format folder --corpus /data/mycorpus --out data/manifests
    python -m asr.data.importers --format tsv --corpus /data/list.tsv --out data/manifests --case keep
    python -m asr.data.importers --format kaldi --corpus /kaldi/egs/x/s5/data --out data/manifests
    python -m asr.data.importers --format lhotse --corpus /data/shar_dir --out data/manifests
    python -m asr.data.importers --out data/manifests --list-sets test      # names of the imported test sets

Formats:
  folder  a.wav + a.txt beside it (wav, flac, mp3, ogg, opus; any rate), any depth; speaker = first sub-folder;
          top-level folders train*/dev*/test* are the sets when all audio lies under them
  tsv     a .tsv/.csv file of path, text[, speaker] rows (header optional), or a folder of them (one set each)
  kaldi   a data dir (wav.scp incl. `cmd |` pipes, text, [segments], [utt2spk]) or a folder of data dirs
  lhotse  recordings + supervisions (or cuts) manifests, or a Shar directory

Writes <out>/<prefix>_{recordings,supervisions}_<set>.jsonl.gz (--prefix, default librispeech: the names
asr.data.features, asr.data.bpe and the data loaders read with the same prefix), <out>/import_report.json and <out>/import_report.txt. Unreadable audio, missing or empty
transcripts, durations outside [--min-duration, --max-duration] and malformed lines are skipped, counted by kind
and reported. A corpus given as one set is split (seeded, by speaker) into train/dev/test; one with train* sets
but no dev or test set gets them split off its largest train set.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from asr.data.importers.config import CASES, NUMBERS, PUNCTUATION, ImportConfig, SplitConfig, TextNormConfig
from asr.data.importers.formats import FORMATS
from asr.data.prepare import PREFIX

log = logging.getLogger("asr.data.importers")


def parser() -> argparse.ArgumentParser:
    d = ImportConfig()
    ap = argparse.ArgumentParser(prog="python -m asr.data.importers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--format", choices=FORMATS)
    ap.add_argument("--corpus", type=Path, help="the corpus folder (or .tsv/.csv file)")
    ap.add_argument("--out", type=Path, required=True, help="manifest folder (recipes: data/manifests)")
    ap.add_argument("--prefix", default=PREFIX,
                    help=f"manifests are named <prefix>_<kind>_<set>.jsonl.gz (default {PREFIX}; recipes/custom: custom)")
    ap.add_argument("--list-sets", choices=("train", "dev", "test"),
                    help="print the comma-separated names of the imported sets of this role and exit")
    t = ap.add_argument_group("text normalisation")
    t.add_argument("--case", choices=CASES, default=d.text.case, help=f"default {d.text.case}")
    t.add_argument("--punctuation", choices=PUNCTUATION, default=d.text.punctuation,
                   help=f"default {d.text.punctuation} (apostrophes inside words stay)")
    t.add_argument("--keep-chars", default=d.text.keep_chars,
                   help="punctuation kept when removing it (default %r)" % d.text.keep_chars.replace("%", "%%"))
    t.add_argument("--drop-apostrophes", action="store_true", help="remove apostrophes inside words too")
    t.add_argument("--numbers", choices=NUMBERS, default=d.text.numbers,
                   help="keep digits as written, or skip utterances holding any (default keep)")
    t.add_argument("--no-nfkc", action="store_true", help="no Unicode NFKC normalisation")
    a = ap.add_argument_group("audio and limits")
    a.add_argument("--min-duration", type=float, default=d.min_duration, help=f"seconds (default {d.min_duration})")
    a.add_argument("--max-duration", type=float, default=d.max_duration, help=f"seconds (default {d.max_duration})")
    a.add_argument("--sample-rate", type=int, default=d.sample_rate,
                   help=f"resample other rates to this (default {d.sample_rate}; 0 keeps them)")
    a.add_argument("--multichannel", choices=("downmix", "first", "skip"), default=d.multichannel)
    a.add_argument("--speaker-from", choices=("dir", "none"), default="dir",
                   help="folder format: speaker = first sub-folder (dir) or none")
    a.add_argument("--jobs", type=int, default=d.jobs)
    a.add_argument("--command-timeout", type=float, default=d.command_timeout,
                   help="seconds a wav.scp pipe may run")
    s = ap.add_argument_group("split (when the corpus has no dev/test set)")
    s.add_argument("--dev-fraction", type=float, default=d.split.dev_fraction)
    s.add_argument("--test-fraction", type=float, default=d.split.test_fraction)
    s.add_argument("--seed", type=int, default=d.split.seed)
    return ap


def list_sets(out: Path, role: str) -> str:
    from asr.data.importers.build import REPORT_JSON

    path = out / REPORT_JSON
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: import the corpus first")
    sets = json.loads(path.read_text())["sets"]
    return ",".join(n for n, s in sets.items() if s["role"] == role)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.list_sets:
        try:
            print(list_sets(args.out, args.list_sets))
        except FileNotFoundError as e:
            raise SystemExit(f"asr.data.importers: {e}")
        return
    if args.format is None or args.corpus is None:
        raise SystemExit("asr.data.importers: --format and --corpus are required (see --help)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = ImportConfig(
            text=TextNormConfig(case=args.case, punctuation=args.punctuation,
                                keep_apostrophes=not args.drop_apostrophes,
                                numbers=args.numbers, unicode_nfkc=not args.no_nfkc, keep_chars=args.keep_chars),
            split=SplitConfig(dev_fraction=args.dev_fraction, test_fraction=args.test_fraction, seed=args.seed),
            min_duration=args.min_duration, max_duration=args.max_duration, sample_rate=args.sample_rate,
            multichannel=args.multichannel, jobs=args.jobs, command_timeout=args.command_timeout)
        from asr.data.importers.build import REPORT_TXT, import_corpus
        from asr.data.importers.formats import read_corpus

        raw = read_corpus(args.format, args.corpus, args.out, args.speaker_from)
        report = import_corpus(raw, args.out, cfg, fmt=args.format, corpus=str(args.corpus), prefix=args.prefix)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"asr.data.importers: {e}")
    sys.stdout.write((args.out / REPORT_TXT).read_text())
    if not any(s["role"] == "train" for s in report["sets"].values()):
        raise SystemExit("asr.data.importers: no training utterance kept (see the report)")


if __name__ == "__main__":
    main()
