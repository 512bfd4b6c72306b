"""`asr-transcribe`: transcribes audio files with a trained model, one line per file: path, a tab, the text.

    asr-transcribe --exp-dir recipes/librispeech/exp/l12 --epoch 30 --avg 9 a.flac b.wav
    asr-transcribe --exp-dir exp/demo --checkpoint exp/demo/epoch-3.pt --method modified_beam_search *.wav
    asr-transcribe --exp-dir exp/demo --method modified_beam_search --beam 32 \
        --lm data/lm_bpe_64/tokens_8gram.arpa --lm-scale 0.4 --lm-bonus 1.5 \
        --lexicon data/lm_bpe_64/words.txt --word-lm data/lm_bpe_64/words_3gram.arpa a.wav

The LM options are those of decoding's `modified_beam_search_lm` (conf/decode/modified_beam_search_lm.yaml):
shallow fusion of prepare.sh stage 5's token n-gram, lexicon and word n-gram, modified beam search only.

Audio of any sample rate and channel count is read (channels averaged), resampled to 16 kHz, and turned into the
fbank features of training (lhotse's Fbank, its defaults, with the model's number of bins). A file that is missing or
cannot be read gets a message on stderr; the other files are still transcribed, and the exit status is 1 at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from lhotse import Fbank, FbankConfig

from asr.decode.config import METHODS, SearchConfig, check_search
from asr.decode.inference import InferenceConfig, InferenceError, load_inference
from asr.decode.search import search

# LibriSpeech, and so every model trained by the recipes, is 16 kHz.
SAMPLE_RATE = 16000
PROG = "asr-transcribe"


class AudioError(Exception):
    """An input file that cannot be transcribed (missing, unreadable, empty, too short)."""


def read_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of an audio file, resampled to `sample_rate`. Raises AudioError."""
    if not path.is_file():
        raise AudioError("no such file" if not path.exists() else "not a file")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (n, channels)
    except Exception as e:  # libsndfile's errors: unknown format, truncated file, ...
        raise AudioError(f"cannot read audio ({e})") from e
    if samples.shape[0] == 0:
        raise AudioError("no samples")
    mono = torch.from_numpy(samples.mean(axis=1))
    if rate != sample_rate:
        mono = torchaudio.functional.resample(mono, rate, sample_rate)
    return mono.numpy()


def features(samples: np.ndarray, num_bins: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(T, F) log-mel fbank of the samples, as lhotse computes them for training."""
    return torch.from_numpy(Fbank(FbankConfig(num_filters=num_bins)).extract(samples, sample_rate)).float()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, type=Path, help="experiment directory of a training run")
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
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto...")
    p.add_argument("files", nargs="+", type=Path, help="wav/flac files")
    return p.parse_args(argv)


@torch.inference_mode()
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.WARNING)
    try:
        check_search(SearchConfig(method=args.method, beam=args.beam, max_sym_per_frame=args.max_sym_per_frame,
                                  lm=args.lm, lexicon=args.lexicon, word_lm=args.word_lm))
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    cfg = InferenceConfig(
        exp_dir=str(args.exp_dir), epoch=args.epoch, avg=args.avg, iter=args.iter,
        use_averaged_model=args.use_averaged_model, checkpoint=args.checkpoint, bpe_model=args.bpe_model,
        device=args.device, lm=args.lm, lm_scale=args.lm_scale, lm_bonus=args.lm_bonus, lexicon=args.lexicon,
        word_lm=args.word_lm, word_lm_scale=args.word_lm_scale, word_lm_bonus=args.word_lm_bonus,
    )  # fmt: skip
    try:
        inf = load_inference(cfg)
    except InferenceError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    model, tokenizer, fusion, device, num_bins = inf.model, inf.tokenizer, inf.fusion, inf.device, inf.num_features

    failed = 0
    for path in args.files:
        try:
            feats = features(read_audio(path), num_bins)  # (T, F)
            x_lens = torch.tensor([feats.size(0)], dtype=torch.int64)
            if int(model.encoder.output_lengths(x_lens)[0]) < 1:
                raise AudioError(f"too short ({feats.size(0)} feature frames)")
            enc, enc_lens = model.encode(feats.unsqueeze(0).to(device), x_lens.to(device))
            hyp = search(model, enc, enc_lens, args.method, beam=args.beam, max_sym_per_frame=args.max_sym_per_frame,
                         fusion=fusion)
            text = tokenizer.decode(hyp)[0].upper()
        except AudioError as e:
            print(f"{PROG}: {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}\t{text}", flush=True)
    if failed:
        print(f"{PROG}: {failed} of {len(args.files)} files could not be transcribed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
