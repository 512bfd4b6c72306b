"""Decoding test sets: batches of features -> encoder -> search -> words, with timing for the real-time factor;
the whole of recipes/librispeech/decode.py (`decode_test_sets`: load, decode each set, write the result files) and
its table (`wer_table`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from asr.data.batch import Batch
from asr.data.config import DataConfig
from asr.data.loaders import AsrDataModule
from asr.data.tokenizer import Tokenizer
from asr.decode.config import DecodeConfig, check_search
from asr.decode.inference import Inference, InferenceConfig, load_inference
from asr.decode.formats import Transcript, write_transcript
from asr.decode.search import search
from asr.decode.words import frame_shift_s, pieces_of, upper_words_of
from asr.lm.fusion import FusionScorer
from asr.progress import progress
from asr.metrics.wer import ErrorStats, Result, write_results

log = logging.getLogger(__name__)

# Frame shift of the fbank features (10 ms, lhotse's and Kaldi's default): turns frame counts into seconds.
FRAME_SHIFT_S = 0.01


@dataclass
class DecodedSet:
    results: list[Result]
    audio_seconds: float
    elapsed_seconds: float
    # (cut id, text, words with times) of each utterance when decode_batches was asked for words (CTM), else empty
    timed: list[Transcript] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        """Real-time factor: decoding time over audio duration."""
        return self.elapsed_seconds / self.audio_seconds if self.audio_seconds > 0 else float("nan")


@torch.inference_mode()
def decode_batches(
    model: nn.Module,
    batches: Iterable[Batch],
    tokenizer: Tokenizer,
    method: str,
    beam: int = 4,
    max_sym_per_frame: int = 1,
    device: torch.device | str = "cpu",
    fusion: FusionScorer | None = None,
    total: int | None = None,
    desc: str = "decode",
    words: bool = False,
) -> DecodedSet:
    """Decodes every batch; reference and hypothesis are upper-cased and split into words.

    Args:
        model: the transducer, in eval mode, on `device`.
        batches: the batches of asr.data.AsrDataModule's test loaders.
        tokenizer: the BPE model of training (token ids -> text).
        method, beam, max_sym_per_frame: the search (see asr.decode.search.search).
        fusion: modified_beam_search's shallow fusion (asr.lm.fusion; None: none).
        total: utterances in `batches`, for the progress display's ETA (None: counts and rate only).
        desc: the progress display's name (asr.progress: a bar on a terminal, periodic log lines elsewhere).
        words: also keep each utterance's words with times and confidences (asr.decode.words) in `timed`.
    """
    results: list[Result] = []
    timed: list[Transcript] = []
    if words:
        pieces, shift = pieces_of(tokenizer), frame_shift_s(model)
    audio = elapsed = 0.0
    bar = progress(total=total, desc=desc, unit="utt")
    for batch in batches:
        x, x_lens, cut_ids, texts = batch.features, batch.feature_lens, batch.cut_ids, batch.texts
        start = time.perf_counter()
        enc, enc_lens = model.encode(x.to(device), x_lens.to(device))
        found = search(model, enc, enc_lens, method, beam=beam, max_sym_per_frame=max_sym_per_frame, fusion=fusion)
        hyps = tokenizer.decode([h.tokens for h in found])
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - start
        audio += float(x_lens.sum()) * FRAME_SHIFT_S
        for cut_id, ref, hyp in zip(cut_ids, texts, hyps):
            results.append(Result(cut_id, ref.upper().split(), hyp.upper().split()))
        if words:
            for cut_id, hyp, h in zip(cut_ids, hyps, found):
                timed.append(Transcript(cut_id, hyp.upper(), upper_words_of(h, pieces, shift)))
        bar.update(len(cut_ids))
    bar.close()
    return DecodedSet(results=results, audio_seconds=audio, elapsed_seconds=elapsed, timed=timed)


def _utterances(loader) -> int | None:
    """Cuts of a test loader (its lhotse sampler's data source), for the progress ETA; None when not known cheaply
    (a lazy manifest)."""
    try:
        return len(loader.sampler.data_source) or None
    except (AttributeError, TypeError, NotImplementedError):
        return None


@dataclass
class SetResult:
    """One decoded test set: its name, edit counts, utterances and real-time factor."""

    name: str
    stats: ErrorStats
    utterances: int
    rtf: float


@dataclass
class DecodeReport:
    setting: str  # names the run in the result files, e.g. "greedy_epoch-30-avg-9"
    out_dir: Path  # where the recogs, errs and wer-summary files are
    sets: list[SetResult]


def decode_data_config(cfg: DecodeConfig, train_config: dict, bpe_model: str | Path) -> DataConfig:
    """The training run's data config with decoding's overrides (manifest_dir, test_sets, max_duration,
    on_the_fly_feats) and the BPE model that inference found."""
    data = OmegaConf.merge(OmegaConf.structured(DataConfig), train_config.get("data", {}))
    if cfg.manifest_dir:
        data.manifest_dir = cfg.manifest_dir
    data.bpe_model = str(bpe_model)
    if cfg.test_sets or cfg.test_dirs:  # test_dirs alone: only those
        data.test_sets = list(cfg.test_sets)
    data.max_duration = cfg.max_duration
    data.on_the_fly_feats = data.on_the_fly_feats or cfg.on_the_fly_feats
    return OmegaConf.to_object(data)


def decode_test_sets(cfg: DecodeConfig, inference: Inference | None = None) -> DecodeReport:
    """Decodes the test sets of a decoding config (conf/decode.yaml) and writes
    <exp_dir>/<method>[_lm]/{recogs,errs,wer-summary}-<set>-<method>[_lm].txt for each, and with decode.ctm the
    word times as NIST CTM, ctm-<set>-<method>[_lm].ctm (utterance ids as the file field, channel A).

    Args:
        cfg: the decoding config: weights, search, test sets (by name and as LibriSpeech-layout folders).
        inference: an already loaded model (default: load_inference of the config).
    Raises:
        ValueError: bad search settings; InferenceError: nothing to decode with; FileNotFoundError: no test set.
    """
    check_search(cfg.decode)
    inf = inference or load_inference(InferenceConfig.from_decode_config(cfg))
    log.info("decoding with %s on %s, %s", inf.description, inf.device, cfg.decode)
    module = AsrDataModule(decode_data_config(cfg, inf.train_config, inf.bpe_model), inf.tokenizer)
    loaders = module.test_dataloaders()
    for folder in cfg.test_dirs:
        loaders[Path(folder).name] = module.test_dataloader_for(folder)
    if not loaders:
        raise FileNotFoundError(f"nothing to decode: no cuts for {module.cfg.test_sets} in {module.cfg.manifest_dir}, "
                                f"no test_dirs")
    method = cfg.decode.method if inf.fusion is None else f"{cfg.decode.method}_lm"  # fusion: beside, not over
    setting = inf.setting(cfg.decode)
    out_dir = Path(cfg.exp_dir) / method
    sets = []
    for name, loader in loaders.items():
        total = _utterances(loader)
        decoded = decode_batches(inf.model, loader, inf.tokenizer, cfg.decode.method, beam=cfg.decode.beam,
                                 max_sym_per_frame=cfg.decode.max_sym_per_frame, device=inf.device,
                                 fusion=inf.fusion, total=total, desc=f"{method} {name}", words=cfg.ctm)  # fmt: skip
        stats = write_results(out_dir, name, method, decoded.results, setting=setting)
        if cfg.ctm:
            write_transcript("ctm", out_dir / f"ctm-{name}-{method}.ctm", decoded.timed)
        log.info("%s: WER %.2f%% (%d utterances), RTF %.4f", name, stats.wer, len(decoded.results), decoded.rtf)
        sets.append(SetResult(name, stats, len(decoded.results), decoded.rtf))
    return DecodeReport(setting=setting, out_dir=out_dir, sets=sets)


def wer_table(report: DecodeReport) -> str:
    """The report as a table: one line per test set with WER, insertions, deletions, substitutions, reference
    words, utterances and real-time factor, under a line naming the setting and the result folder."""
    lines = [f"{report.setting}  (results in {report.out_dir})",
             f"{'test set':<20} {'WER %':>7} {'ins':>6} {'del':>6} {'sub':>6} {'words':>8} {'utts':>6} {'RTF':>8}"]
    for r in report.sets:
        s = r.stats
        lines.append(f"{r.name:<20} {s.wer:>7.2f} {s.insertions:>6} {s.deletions:>6} {s.substitutions:>6} "
                     f"{s.ref_words:>8} {r.utterances:>6} {r.rtf:>8.4f}")
    return "\n".join(lines)
