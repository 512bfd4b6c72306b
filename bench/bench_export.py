"""Real-time factor of sherpa-onnx (fp32 and int8) against our PyTorch greedy search, 1 thread, same files, one run;
and the exported model's file sizes.

    nice .venv/bin/python bench/bench_export.py                        # the demo's model shape, random weights
    .venv/bin/python bench/bench_export.py --exp-dir exp/demo --wavs download/demo/LibriSpeech/test-clean/*/*/*.flac

Each side goes from samples to token ids one file at a time: PyTorch = lhotse fbank + encoder + greedy search;
sherpa-onnx = its own fbank + ONNX encoder + its greedy search. RTF = processing seconds / audio seconds
(the minimum over --repeats passes, taken in turn); the ratios are PyTorch's RTF over sherpa-onnx's (> 1: sherpa-onnx
is faster). Targets: int8 files <= 0.3x the fp32 size, sherpa-onnx int8 >= 2x faster than PyTorch. It also counts
the files whose sherpa-onnx tokens equal PyTorch's, and prints how far training's fbank (lhotse) is from the
Kaldi-compatible fbank with sherpa-onnx's settings on these files. Without --exp-dir the model is the demo's
(conformer_small, 64 units) with random weights and the blank logit raised so that it emits on about one frame in
four, as a trained model roughly does; without --wavs, flite speaks a few sentences (scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SENTENCES = [
    "the quick brown fox jumps over the lazy dog near the river bank",
    "she sells sea shells by the sea shore every summer morning",
    "a journey of a thousand miles begins with a single step",
    "how much wood would a woodchuck chuck if a woodchuck could chuck wood",
    "the rain in spain stays mainly in the plain according to the song",
    "peter piper picked a peck of pickled peppers from the garden",
    "every good boy deserves fruit and every small girl likes music",
    "it was the best of times it was the worst of times in the old city",
]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def speak(texts: list[str], out: Path) -> list[Path]:
    if shutil.which("flite") is None:
        raise SystemExit("bench_export: flite not found; give --wavs or run scripts/setup.sh")
    paths = []
    for i, text in enumerate(texts):
        paths.append(out / f"utt-{i}.wav")
        subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(paths[-1])], check=True)
    return paths


def random_demo_model(work: Path, samples: list):
    """conformer_small at the demo's 64 units, random weights, the blank logit raised so that greedy search emits on
    about a quarter of the frames; and a BPE model of 64 units."""
    from omegaconf import OmegaConf

    from asr.data.bpe import train_bpe
    from asr.models import ModelConfig, build_model

    root = Path(__file__).resolve().parents[1]
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(root / "conf/model/conformer_small.yaml"),
                          {"vocab_size": 64})  # fmt: skip
    torch.manual_seed(0)
    model = build_model(OmegaConf.to_object(cfg)).eval()
    from asr.data.audio import fbank as training_fbank

    with torch.no_grad():
        f = training_fbank(samples[0])  # (T, F)
        enc, _ = model.encode(f.unsqueeze(0), torch.tensor([f.size(0)]))
        dec = model.joiner.decoder_proj(model.decoder(torch.zeros(1, model.context_size, dtype=torch.int64),
                                                      need_pad=False))  # (1, 1, J)
        logits = model.joiner(model.joiner.encoder_proj(enc[0]), dec[0])  # (T', V)
        margin = logits[:, 1:].max(dim=-1).values - logits[:, 0]  # (T',) best non-blank over blank
        model.joiner.output_linear.bias[0] += float(margin.quantile(0.75))
    bpe = train_bpe(SENTENCES * 20, work / "lang", vocab_size=64)
    return model, bpe


def token_ids_of(model_dir: Path) -> dict[str, int]:
    """sherpa-onnx result piece (word boundary as a space) -> id, from tokens.txt."""
    lines = (model_dir / "tokens.txt").read_text(encoding="utf-8").splitlines()
    return {piece.replace("\u2581", " "): int(i) for piece, i in (line.split() for line in lines)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp-dir", type=Path, help="a training run (its newest epoch-E.pt); default: random weights")
    ap.add_argument("--bpe-model", default="", help="with --exp-dir: default the training config's")
    ap.add_argument("--wavs", nargs="*", type=Path, help="audio files; default: flite speaks 8 sentences")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from asr.decode.search import search
    from asr.data.audio import fbank as training_fbank, read_audio
    from asr.export.frontend import fbank_difference
    from asr.export.onnx import export_onnx, model_files
    from asr.export.sherpa import SAMPLE_RATE, decode_samples, make_recognizer

    work = Path(tempfile.mkdtemp(prefix="bench_export-"))
    wavs = args.wavs or speak(SENTENCES, work)
    samples = [read_audio(p) for p in wavs]
    audio_s = sum(len(s) for s in samples) / SAMPLE_RATE
    if args.exp_dir:
        from asr.export.cli import bpe_model_path, load_for_export

        ns = argparse.Namespace(exp_dir=args.exp_dir, epoch=0, avg=1, iter=0, use_averaged_model=False, checkpoint="")
        model, train_config, _ = load_for_export(ns)
        bpe = bpe_model_path(args.bpe_model, train_config, args.exp_dir)
    else:
        model, bpe = random_demo_model(work, samples)
    export_onnx(model, bpe, work / "onnx", int8=True)

    def pytorch() -> list[list[int]]:
        out = []
        with torch.inference_mode():
            for s in samples:
                f = training_fbank(s)  # (T, F)
                enc, enc_lens = model.encode(f.unsqueeze(0), torch.tensor([f.size(0)]))
                out.append(search(model, enc, enc_lens, "greedy")[0].tokens)
        return out

    runs = {"pytorch": pytorch}
    for int8 in (False, True):
        rec = make_recognizer(work / "onnx", "greedy", int8=int8, num_threads=1)
        runs["sherpa-int8" if int8 else "sherpa-fp32"] = lambda rec=rec: decode_samples(rec, samples, batch=False)
    rtf = {name: float("inf") for name in runs}
    hyps = {}
    for _ in range(args.repeats):  # round robin, so that a busy moment of the machine hits every runtime alike
        for name, fn in runs.items():
            start = time.perf_counter()
            out = fn()
            rtf[name] = min(rtf[name], (time.perf_counter() - start) / audio_s)
            hyps[name] = out
    emitted = sum(len(h) for h in hyps["pytorch"])
    size = {k: sum(p.stat().st_size for n, p in model_files(work / "onnx", k).items() if n != "tokens")
            for k in (False, True)}  # fmt: skip

    print(f"CPU: {cpu_model()}, 1 thread; torch {torch.__version__}; {len(samples)} files, {audio_s:.1f} s of audio, "
          f"{emitted} tokens by PyTorch greedy; model: {args.exp_dir or 'conformer_small 64 units, random weights'}")
    ids = token_ids_of(work / "onnx")
    print("| runtime | RTF | speed-up over PyTorch | files with PyTorch's tokens |")
    print("|---|---|---|---|")
    for name, value in rtf.items():
        got = hyps[name] if name == "pytorch" else [[ids[p] for p in pieces] for _, pieces in hyps[name]]
        same = sum(a == b for a, b in zip(got, hyps["pytorch"]))
        print(f"| {name} | {value:.4f} | {rtf['pytorch'] / value:.2f}x | {same}/{len(samples)} |")
    diffs = [fbank_difference(s) for s in samples]
    print(f"fbank, training (lhotse) vs Kaldi-compatible (sherpa-onnx's settings): max |diff| "
          f"{max(d['max_abs'] for d in diffs):.2e}, mean |diff| {np.mean([d['mean_abs'] for d in diffs]):.2e} "
          f"(log-mel units); frames equal in {sum(d['frames_training'] == d['frames_kaldi'] for d in diffs)}"
          f"/{len(diffs)} files")
    print(f"ONNX files: fp32 {size[False] / 1e6:.2f} MB, int8 {size[True] / 1e6:.2f} MB "
          f"({size[True] / size[False]:.2f}x; target <= 0.3x)")  # fmt: skip
    for name in ("encoder", "decoder", "joiner"):
        f32, i8 = (model_files(work / "onnx", k)[name].stat().st_size for k in (False, True))
        print(f"  {name}: {f32 / 1e6:.3f} -> {i8 / 1e6:.3f} MB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
