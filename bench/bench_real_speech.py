#!/usr/bin/env python3
"""How the demo model does on recordings of people: WER on the read-speech clips of Debian's pocketsphinx-testdata
(LibriVox recordings of *Sense and Sensibility*, 5 utterances, 16 kHz) beside its WER on the demo's synthetic
test-clean, same model, same search, one run.

    apt-get download pocketsphinx-testdata && dpkg -x pocketsphinx-testdata_*.deb /tmp/ps
    cd recipes/librispeech
    ../../.venv/bin/python ../../bench/bench_real_speech.py --exp-dir exp/demo \
        --real /tmp/ps/usr/share/pocketsphinx/test/data/librivox \
        --synthetic download/demo/LibriSpeech/test-clean [--method greedy] [--num-synthetic 40]

--real is a folder with Sphinx's `transcription` file (`<s> words </s> (file-id)` per line) beside FILE-ID.wav;
--synthetic a LibriSpeech-layout folder (`*.trans.txt` beside the FLAC files), of which the first --num-synthetic
utterances (sorted by id) are decoded. Both go through `asr-transcribe` (the same audio reading, resampling and
fbank a user gets). Both sides are normalised as the corpus is (asr.data.text.normalize_transcript).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from asr.data.audio_folder import librispeech_transcripts
from asr.data.text import normalize_transcript
from asr.metrics.wer import Result, compute_wer

_SPHINX_LINE = re.compile(r"^\s*(?:<s>)?(?P<text>.*?)(?:</s>)?\s*\((?P<id>[^()]+)\)\s*$")


def normalise(text: str) -> list[str]:
    return (normalize_transcript(text) or "").split()


def sphinx_refs(folder: Path) -> dict[Path, str]:
    """{wav: reference} from a Sphinx `transcription` file."""
    refs = {}
    for n, line in enumerate((folder / "transcription").read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = _SPHINX_LINE.match(line)
        if m is None:
            raise SystemExit(f"{folder / 'transcription'}:{n}: not '<s> words </s> (id)': {line!r}")
        wav = folder / f"{m['id']}.wav"
        if not wav.is_file():
            raise SystemExit(f"{folder / 'transcription'}:{n}: no audio file {wav}")
        refs[wav] = m["text"]
    return refs


def librispeech_refs(folder: Path, limit: int) -> dict[Path, str]:
    """{flac: reference} of the first `limit` utterances (by id) of a LibriSpeech-layout folder."""
    texts = librispeech_transcripts(folder)
    flacs = {p.stem: p for p in folder.rglob("*.flac")}
    return {flacs[uid]: texts[uid] for uid in sorted(texts)[:limit] if uid in flacs}


def transcribe(files: list[Path], args: argparse.Namespace) -> dict[Path, str]:
    cmd = [sys.executable, "-m", "asr.decode.transcribe", "--exp-dir", args.exp_dir, "--method", args.method,
           *(["--epoch", str(args.epoch), "--avg", str(args.avg)] if args.epoch else []), *map(str, files)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"asr-transcribe failed:\n{out.stderr[-3000:]}")
    hyps = {}
    for line in out.stdout.splitlines():
        path, _, text = line.partition("\t")
        hyps[Path(path)] = text
    return hyps


def wer_of(refs: dict[Path, str], args: argparse.Namespace) -> tuple[float, int, list[Result]]:
    hyps = transcribe(list(refs), args)
    results = [Result(p.stem, normalise(ref), normalise(hyps.get(p, ""))) for p, ref in refs.items()]
    stats = compute_wer(results)
    return stats.wer, stats.ref_words, results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--epoch", type=int, default=0)
    p.add_argument("--avg", type=int, default=1)
    p.add_argument("--method", default="greedy", choices=["greedy", "beam_search", "modified_beam_search"])
    p.add_argument("--real", type=Path, required=True, help="pocketsphinx-testdata's librivox folder")
    p.add_argument("--synthetic", type=Path, required=True, help="the demo's test-clean (LibriSpeech layout)")
    p.add_argument("--num-synthetic", type=int, default=40)
    args = p.parse_args()

    rows = []
    for name, refs in (("real: LibriVox (pocketsphinx-testdata)", sphinx_refs(args.real)),
                       ("synthetic: demo test-clean", librispeech_refs(args.synthetic, args.num_synthetic))):
        wer, words, results = wer_of(refs, args)
        rows.append((name, len(refs), words, wer))
        if name.startswith("real"):
            for r in results:
                print(f"  {r.cut_id}\n    ref: {' '.join(r.ref)}\n    hyp: {' '.join(r.hyp)}")
    print(f"\n| test audio ({args.method}) | utterances | words | WER % |\n|---|---|---|---|")
    for name, n, words, wer in rows:
        print(f"| {name} | {n} | {words} | {wer:.2f} |")


if __name__ == "__main__":
    main()
