"""WER of an exported model decoded by sherpa-onnx on LibriSpeech-layout folders, written like decode.py's results.

    python -m asr.export.evaluate --model-dir exp/demo/onnx --out-dir exp/demo/sherpa-onnx \
        download/demo/LibriSpeech/test-clean [--int8] [--method greedy|modified_beam_search]

Each folder (`<spk>/<chapter>/*.flac` + `*.trans.txt`) is a test set named after it; for each, OUT holds
recogs-/errs-/wer-summary-<set>-sherpa_onnx_<method>[_int8].txt (asr.metrics.wer's files), so run.sh's WER table
shows sherpa-onnx's line beside PyTorch's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.export.onnx import ExportError

AUDIO_SUFFIXES = (".flac", ".wav")
CHUNK = 16  # streams decoded together by one decode_streams call


def folder_utterances(folder: Path) -> list[tuple[str, Path, str]]:
    """(utterance id, audio path, reference text) of every audio file under `folder` with a transcript line."""
    from asr.data.audio_folder import librispeech_transcripts

    texts = librispeech_transcripts(folder)
    audio = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.stem in texts)
    if not audio:
        raise FileNotFoundError(f"no transcribed audio ({', '.join(AUDIO_SUFFIXES)} + *.trans.txt) under {folder}")
    return [(p.stem, p, texts[p.stem]) for p in audio]


def evaluate(model_dir: Path, folders: list[Path], out_dir: Path, method: str = "greedy", int8: bool = False,
             num_threads: int = 1) -> dict[str, float]:
    """{test set: WER %} of sherpa-onnx on each folder; the result files go to `out_dir`."""
    from asr.data.audio import read_audio
    from asr.export.sherpa import decode_samples, make_recognizer
    from asr.metrics.wer import Result, write_results

    recognizer = make_recognizer(model_dir, method, int8=int8, num_threads=num_threads)
    name = f"sherpa_onnx_{method}" + ("_int8" if int8 else "")
    wers = {}
    for folder in folders:
        utts = folder_utterances(folder)
        results = []
        for start in range(0, len(utts), CHUNK):
            chunk = utts[start : start + CHUNK]
            decoded = decode_samples(recognizer, [read_audio(p) for _, p, _ in chunk])
            results += [Result(uid, ref.upper().split(), text.upper().split())
                        for (uid, _, ref), (text, _) in zip(chunk, decoded)]  # fmt: skip
        stats = write_results(out_dir, folder.name, name, results)
        wers[folder.name] = stats.wer
    return wers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="asr.export.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--model-dir", required=True, type=Path, help="asr-export's output directory")
    ap.add_argument("--out-dir", required=True, type=Path)
    ap.add_argument("--method", default="greedy", choices=("greedy", "modified_beam_search"))
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--num-threads", type=int, default=1)
    ap.add_argument("folders", nargs="+", type=Path, help="LibriSpeech-layout test folders")
    args = ap.parse_args(argv)
    try:
        wers = evaluate(args.model_dir, args.folders, args.out_dir, args.method, args.int8, args.num_threads)
    except (OSError, ExportError) as e:
        print(f"asr.export.evaluate: {e}", file=sys.stderr)
        return 2
    for name, wer in wers.items():
        print(f"{name}\tsherpa-onnx {args.method}{' int8' if args.int8 else ''}\t{wer:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
