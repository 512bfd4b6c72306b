"""`asr-transcribe`: transcribes audio files with a trained model: by default one line per file, path, a tab, the
text; with --format, word times and confidences as JSON Lines, SRT or WebVTT subtitles, or NIST CTM.

    asr-transcribe --exp-dir recipes/librispeech/exp/l12 --epoch 30 --avg 9 a.flac b.wav
    asr-transcribe --exp-dir exp/demo --checkpoint exp/demo/epoch-3.pt --method modified_beam_search *.wav
    asr-transcribe --exp-dir exp/demo --method modified_beam_search --beam 32 \
        --lm data/lm_bpe_64/tokens_8gram.arpa --lm-scale 0.4 --lm-bonus 1.5 \
        --lexicon data/lm_bpe_64/words.txt --word-lm data/lm_bpe_64/words_3gram.arpa a.wav
    asr-transcribe --exp-dir exp/demo --method modified_beam_search --hotwords names.txt --hotword-score 2 a.wav
    asr-transcribe --onnx exp/demo/onnx [--int8] --method modified_beam_search a.wav   # sherpa-onnx (asr-export)
    asr-transcribe --jit exp/demo/onnx/jit.pt a.wav                                    # TorchScript (asr-export --jit)
    asr-transcribe --exp-dir exp/demo --format json *.wav > words.jsonl    # {"path", "text", "words": [...]} a line
    asr-transcribe --exp-dir exp/demo --format srt --output-dir subs *.wav   # subs/<name>.srt for each file
    asr-transcribe --exp-dir exp/demo --format ctm *.wav > all.ctm          # sclite's CTM, sorted by file

Word times (asr.decode.words) are those of the search's emissions: a word starts at its first token's encoder frame
and ends a frame after its last; its confidence is the lowest probability among its tokens. They need the PyTorch
model (--exp-dir). srt and vtt make one subtitle file per audio file: on standard output for a single file, else
into --output-dir (named after the audio file); cues hold at most --max-words words and --max-seconds seconds and
break at pauses over 1 s (asr.decode.formats.SubtitleConfig).

The LM options are those of decoding's `modified_beam_search_lm` (conf/decode/modified_beam_search_lm.yaml):
shallow fusion of prepare.sh stage 5's token n-gram, lexicon and word n-gram, modified beam search only.
--hotwords (modified beam search, with or without the LMs, and with --onnx: sherpa-onnx's own hotwords): one phrase
per line, optional " :BOOST" (the bonus per token instead of --hotword-score), format in asr.decode.hotwords.

Audio of any sample rate and channel count is read (channels averaged), resampled to 16 kHz, and turned into the
fbank features of training (lhotse's Fbank, its defaults, with the model's number of bins). A file that is missing or
cannot be read gets a message on stderr; the other files are still transcribed, and the exit status is 1 at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

import torch

from asr.data.audio import AudioError, fbank, read_audio
from asr.decode.config import METHODS, SearchConfig, check_search
from asr.decode.formats import FORMATS, SubtitleConfig, Transcript, ctm_id, format_transcripts
from asr.decode.inference import InferenceConfig, InferenceError, load_inference
from asr.decode.search import search
from asr.decode.words import Word, frame_shift_s, pieces_of, upper_words_of

PROG = "asr-transcribe"
# (n,) 16 kHz samples -> upper-cased text and its words with times (empty when the runtime gives none); raises
# AudioError
Transcriber = Callable[[np.ndarray], tuple[str, list[Word]]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, help="experiment directory of a training run (not with --onnx/--jit)")
    p.add_argument("--onnx", type=Path, help="decode with sherpa-onnx from this asr-export directory instead")
    p.add_argument("--int8", action="store_true", help="with --onnx: the *.int8.onnx models")
    p.add_argument("--jit", type=Path, help="decode with this TorchScript jit.pt (asr-export --jit) instead")
    p.add_argument("--epoch", type=int, default=0, help="last epoch of the average (0: the newest)")
    p.add_argument("--avg", type=int, default=1, help="epoch checkpoints averaged")
    p.add_argument("--iter", type=int, default=0, help="average checkpoint-N.pt with N <= ITER instead")
    p.add_argument("--use-averaged-model", action="store_true", help="use training's running average")
    p.add_argument("--checkpoint", default="", help="one checkpoint file (overrides --epoch/--avg/--iter)")
    p.add_argument("--method", default="greedy", choices=METHODS)
    p.add_argument("--beam", type=int, default=4, help="beam of the beam searches")
    p.add_argument("--max-sym-per-frame", type=int, default=1, help="greedy: most symbols per frame")
    p.add_argument("--bpe-model", default="", help="default: the training config's, found from the current directory "
                   "or the exp dir upwards (asr.decode.inference)")
    d = SearchConfig()
    p.add_argument("--lm", default="", help="modified_beam_search: token n-gram ARPA for shallow fusion")
    p.add_argument("--lm-scale", type=float, default=d.lm_scale, help="weight of the token LM's log-probs")
    p.add_argument("--lm-bonus", type=float, default=d.lm_bonus, help="added per emitted token while fusing")
    p.add_argument("--lexicon", default="", help="modified_beam_search: words.txt; only its words are spelt")
    p.add_argument("--word-lm", default="", help="word n-gram ARPA over the lexicon's words (needs --lexicon)")
    p.add_argument("--word-lm-scale", type=float, default=d.word_lm_scale, help="weight of the word LM")
    p.add_argument("--word-lm-bonus", type=float, default=d.word_lm_bonus, help="added per completed word")
    p.add_argument("--hotwords", default="", help="modified_beam_search: hotword file, one phrase per line, "
                   "optional ' :BOOST'")
    p.add_argument("--hotword-score", type=float, default=d.hotword_score, help="bonus per token of a hotword")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto...")
    sub = SubtitleConfig()
    p.add_argument("--format", default="text", choices=FORMATS, help="text: path<TAB>text lines; json: JSON Lines with "
                   "word times and confidences; srt, vtt: subtitles; ctm: NIST CTM (default: %(default)s)")
    p.add_argument("--output-dir", type=Path, help="srt/vtt: write <dir>/<audio name>.<format> for each file "
                   "(needed for more than one file)")
    p.add_argument("--max-words", type=int, default=sub.max_words, help="srt/vtt: most words a cue holds")
    p.add_argument("--max-seconds", type=float, default=sub.max_seconds, help="srt/vtt: longest a cue lasts")
    p.add_argument("files", nargs="+", type=Path, help="wav/flac files")
    return p.parse_args(argv)


def pytorch_transcriber(args: argparse.Namespace) -> Transcriber:
    """The checkpoint's model (asr.decode.inference) with our searches and LM fusion. Raises InferenceError."""
    cfg = InferenceConfig(
        exp_dir=str(args.exp_dir), epoch=args.epoch, avg=args.avg, iter=args.iter,
        use_averaged_model=args.use_averaged_model, checkpoint=args.checkpoint, bpe_model=args.bpe_model,
        device=args.device, lm=args.lm, lm_scale=args.lm_scale, lm_bonus=args.lm_bonus, lexicon=args.lexicon,
        word_lm=args.word_lm, word_lm_scale=args.word_lm_scale, word_lm_bonus=args.word_lm_bonus,
        hotwords=args.hotwords, hotword_score=args.hotword_score,
    )  # fmt: skip
    inf = load_inference(cfg)
    pieces, shift = pieces_of(inf.tokenizer), frame_shift_s(inf.model)

    @torch.inference_mode()
    def transcribe(samples: np.ndarray) -> tuple[str, list[Word]]:
        feats = fbank(samples, inf.num_features)  # (T, F)
        x_lens = torch.tensor([feats.size(0)], dtype=torch.int64)
        if int(inf.model.encoder.output_lengths(x_lens)[0]) < 1:
            raise AudioError(f"too short ({feats.size(0)} feature frames)")
        enc, enc_lens = inf.model.encode(feats.unsqueeze(0).to(inf.device), x_lens.to(inf.device))
        hyp = search(inf.model, enc, enc_lens, args.method, beam=args.beam, max_sym_per_frame=args.max_sym_per_frame,
                     fusion=inf.fusion)
        return inf.tokenizer.decode([hyp[0].tokens])[0].upper(), upper_words_of(hyp[0], pieces, shift)

    return transcribe


def exported_transcriber(args: argparse.Namespace) -> Transcriber:
    """sherpa-onnx on an asr-export directory (--onnx), or the TorchScript model (--jit). Raises ExportError or
    FileNotFoundError."""
    from asr.export.jit import JitTranscriber
    from asr.export.onnx import ExportError
    from asr.export.sherpa import SherpaTranscriber

    if args.onnx:
        try:
            sherpa = SherpaTranscriber(args.onnx, args.method, int8=args.int8, num_threads=1, beam=args.beam,
                                       hotwords=args.hotwords, hotword_score=args.hotword_score)
            return lambda samples: (sherpa(samples), [])
        except ExportError as e:  # checked before sherpa-onnx sees it (sherpa exits the process on bad metadata)
            raise ValueError(str(e)) from e

    jit = JitTranscriber(args.jit)
    return lambda samples: (jit(samples, args.method, args.beam), [])


def _check_args(args: argparse.Namespace) -> None:
    """Raises ValueError for a combination that cannot work."""
    sources = [name for name, v in (("--exp-dir", args.exp_dir), ("--onnx", args.onnx), ("--jit", args.jit)) if v]
    if len(sources) != 1:
        raise ValueError(f"give exactly one of --exp-dir, --onnx, --jit (got {', '.join(sources) or 'none'})")
    if args.int8 and not args.onnx:
        raise ValueError("--int8 goes with --onnx")
    if (args.onnx or args.jit) and (args.lm or args.lexicon or args.word_lm):
        raise ValueError("LM fusion (--lm, --lexicon, --word-lm) needs the PyTorch model (--exp-dir)")
    if (args.onnx or args.jit) and args.format != "text":
        raise ValueError(f"--format {args.format} (word times) needs the PyTorch model (--exp-dir); --onnx and --jit "
                         f"give text only")
    if args.format in ("srt", "vtt") and len(args.files) > 1 and not args.output_dir:
        raise ValueError(f"--format {args.format} makes one subtitle file per audio file: give --output-dir for "
                         f"{len(args.files)} files")
    if args.max_words < 1 or args.max_seconds <= 0:
        raise ValueError(f"--max-words must be >= 1 and --max-seconds > 0, got {args.max_words}, {args.max_seconds}")
    if args.jit and args.hotwords:
        raise ValueError("--hotwords needs the PyTorch model (--exp-dir) or sherpa-onnx (--onnx)")
    if args.onnx and args.method not in ("greedy", "modified_beam_search"):
        raise ValueError(f"sherpa-onnx decodes with greedy or modified_beam_search, not {args.method}")
    check_search(SearchConfig(method=args.method, beam=args.beam, max_sym_per_frame=args.max_sym_per_frame,
                              lm=args.lm, lexicon=args.lexicon, word_lm=args.word_lm, hotwords=args.hotwords))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.WARNING)
    try:
        _check_args(args)
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    try:
        transcribe = pytorch_transcriber(args) if args.exp_dir else exported_transcriber(args)
    except (InferenceError, OSError, RuntimeError, ValueError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2

    failed = 0
    subtitles = SubtitleConfig(max_words=args.max_words, max_seconds=args.max_seconds)
    ctm: list[Transcript] = []  # CTM is written at the end: sclite wants it sorted by file
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    for path in args.files:
        try:
            text, words = transcribe(read_audio(path))
        except AudioError as e:
            msg = str(e)
            print(f"{PROG}: {msg if msg.startswith(str(path)) else f'{path}: {msg}'}", file=sys.stderr)
            failed += 1
            continue
        result = Transcript(str(path), text, words)
        if args.format == "ctm":
            ctm.append(Transcript(ctm_id(path), text, words))  # NIST: the file's name, no folder or extension
        elif args.format in ("srt", "vtt") and args.output_dir:
            out = args.output_dir / f"{path.stem}.{args.format}"
            out.write_text(format_transcripts(args.format, [result], subtitles=subtitles), encoding="utf-8")
        else:
            print(format_transcripts(args.format, [result], subtitles=subtitles), end="", flush=True)
    if ctm:
        print(format_transcripts("ctm", ctm), end="", flush=True)
    if failed:
        print(f"{PROG}: {failed} of {len(args.files)} files could not be transcribed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
