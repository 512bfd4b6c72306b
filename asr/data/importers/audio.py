"""Opening the audio of imported corpora: one probe per recording, returning a Recording or why it is unusable.

Files are read through lhotse (soundfile: wav, flac, mp3, ogg/vorbis, opus, ... at any rate); a wav.scp command
(`sox a.sph -t wav - |`) is run once with a timeout and its output decoded in memory, and a failing command counts
as unreadable audio. Rates other than ImportConfig.sample_rate get a lhotse Resample transform; multi-channel
audio is written to a mono FLAC under <out>/audio/ (or skipped, as configured).
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import Recording
from lhotse.audio import AudioSource

from asr.data.importers.config import ImportConfig
from asr.data.importers.entries import BAD_AUDIO, EMPTY_AUDIO, MULTICHANNEL, NO_AUDIO, AudioRef

#: Suffixes the folder reader takes for audio (what soundfile/libsndfile decodes here).
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")


def _from_file(path: Path, rec_id: str) -> Recording | tuple[str, str]:
    if not path.is_file():
        return NO_AUDIO, str(path)
    if path.stat().st_size == 0:
        return EMPTY_AUDIO, str(path)
    try:
        return Recording.from_file(path, recording_id=rec_id)
    except Exception as e:  # soundfile / audioread raise many types on a broken file
        return BAD_AUDIO, f"{path}: {type(e).__name__}"


def _from_command(cmd: str, rec_id: str, timeout: float) -> Recording | tuple[str, str]:
    try:
        proc = subprocess.run(cmd, shell=True, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return BAD_AUDIO, f"{cmd!r}: no end after {timeout:.0f} s"
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return BAD_AUDIO, f"{cmd!r}: exit status {proc.returncode}" + (f" ({err[-1][:200]})" if err else "")
    if not proc.stdout:
        return EMPTY_AUDIO, f"{cmd!r}: no output"
    try:
        info = sf.info(io.BytesIO(proc.stdout))
    except Exception as e:
        return BAD_AUDIO, f"{cmd!r}: output is not audio ({type(e).__name__})"
    if info.frames <= 0:
        return EMPTY_AUDIO, f"{cmd!r}"
    source = AudioSource(type="command", channels=list(range(info.channels)), source=cmd)
    return Recording(id=rec_id, sources=[source], sampling_rate=info.samplerate, num_samples=info.frames,
                     duration=info.frames / info.samplerate)


def _check_recording(rec: Recording) -> Recording | tuple[str, str]:
    """An existing lhotse Recording: its files exist and its first samples decode."""
    for src in rec.sources:
        if src.type == "file":
            p = Path(src.source)
            if not p.is_file():
                return NO_AUDIO, f"{rec.id}: {p}"
            if p.stat().st_size == 0:
                return EMPTY_AUDIO, f"{rec.id}: {p}"
    if rec.num_samples <= 0:
        return EMPTY_AUDIO, rec.id
    try:
        rec.load_audio(offset=0.0, duration=min(0.1, rec.duration))
    except Exception as e:
        return BAD_AUDIO, f"{rec.id}: {type(e).__name__}: {str(e)[:200]}"
    return rec


def _to_mono(rec: Recording, how: str, audio_dir: Path) -> Recording | tuple[str, str]:
    """A mono FLAC of `rec` (channel mean or channel 0) at its own rate under `audio_dir`."""
    try:
        samples = rec.load_audio()  # (C, N)
    except Exception as e:
        return BAD_AUDIO, f"{rec.id}: {type(e).__name__}"
    mono = samples.mean(axis=0) if how == "downmix" else samples[0]
    audio_dir.mkdir(parents=True, exist_ok=True)
    path = audio_dir / f"{rec.id.replace('/', '_')}.flac"
    sf.write(path, np.clip(mono, -1.0, 1.0), rec.sampling_rate, subtype="PCM_16")
    return Recording.from_file(path, recording_id=rec.id)


def probe(rec_id: str, ref: AudioRef, cfg: ImportConfig, audio_dir: Path) -> Recording | tuple[str, str]:
    """The usable Recording `rec_id` of `ref`, or (skip reason, detail)."""
    if ref.kind == "file":
        got = _from_file(Path(ref.value), rec_id)
    elif ref.kind == "command":
        got = _from_command(str(ref.value), rec_id, cfg.command_timeout)
    else:
        got = _check_recording(ref.value)
    if isinstance(got, tuple):
        return got
    if got.num_channels > 1:
        if cfg.multichannel == "skip":
            return MULTICHANNEL, f"{rec_id} ({got.num_channels} channels)"
        got = _to_mono(got, cfg.multichannel, audio_dir)
        if isinstance(got, tuple):
            return got
    if cfg.sample_rate and got.sampling_rate != cfg.sample_rate:
        got = got.resample(cfg.sample_rate)
    return got
