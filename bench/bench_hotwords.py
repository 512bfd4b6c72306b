"""Hotwords on a test set: recall of words the model gets wrong when they are the hotwords, and the WER cost of a
list of unrelated phrases. Prints a Markdown table (recipes/librispeech/RESULTS.md).

    cd recipes/librispeech
    nice -n 10 ../../.venv/bin/python ../../bench/bench_hotwords.py --exp-dir exp/demo --test-set test-clean \
        --unrelated-text download/demo/lm/librispeech-lm-norm.txt.gz
    ... --test-dir download/demo/LibriSpeech/test-clean          # a LibriSpeech-layout folder instead

Modified beam search (beam 4, no LM unless --lm/--lexicon/--word-lm, then summed with it), three runs on encoder
outputs computed once:
- none: the unbiased search;
- missed: the --num-hotwords reference words (--ngram 1) or word n-grams of at least --min-letters letters that the
  unbiased search misses most often, one per line: the usual "biasing list of the test set's rare words"
  evaluation (icefall, WeNet), so recall is measured on the words the list was made from;
- unrelated: --num-unrelated word pairs from --unrelated-text (consecutive words of its sentences, none of them in
  any reference of the test set), seeded: what a list that does not apply costs.
Recall: reference occurrences of the missed phrases that the utterance's hypothesis holds too (counted per
utterance); false alarms: hypothesis occurrences beyond the reference's.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from asr.decode.config import DecodeConfig, SearchConfig
from asr.decode.hotwords import ContextGraph, HotwordFusion, encode_hotwords, parse_hotwords
from asr.decode.inference import InferenceConfig, load_inference
from asr.decode.modified_beam_search import modified_beam_search
from asr.decode.runner import decode_data_config
from asr.data.loaders import AsrDataModule
from asr.lm.fusion import SumFusion
from asr.metrics.wer import Result, compute_wer


def encoder_outputs(args: argparse.Namespace, inf) -> list[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """(encoder output (B, T, D), lengths (B,), upper-cased references) of each batch of the test set."""
    cfg = DecodeConfig(exp_dir=args.exp_dir, test_sets=[args.test_set] if args.test_set else [],
                       manifest_dir=args.manifest_dir, max_duration=args.max_duration)
    module = AsrDataModule(decode_data_config(cfg, inf.train_config, inf.bpe_model), inf.tokenizer)
    loader = module.test_dataloader_for(args.test_dir) if args.test_dir else module.test_dataloaders()[args.test_set]
    out = []
    with torch.inference_mode():
        for batch in loader:
            enc, enc_lens = inf.model.encode(batch.features.to(inf.device), batch.feature_lens.to(inf.device))
            out.append((enc, enc_lens, [t.upper() for t in batch.texts]))
    return out


def decode(inf, batches, fusion, beam: int) -> list[Result]:
    results = []
    for enc, enc_lens, refs in batches:
        found = modified_beam_search(inf.model, enc, enc_lens, beam=beam, fusion=fusion)
        hyps = inf.tokenizer.decode([list(getattr(h, "tokens", h)) for h in found])  # ids or typed hypotheses
        results += [Result(str(len(results) + i), r.split(), h.upper().split()) for i, (r, h) in
                    enumerate(zip(refs, hyps))]
    return results


def ngrams(words: list[str], n: int) -> Counter:
    return Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def missed_phrases(results: list[Result], count: int, n: int, min_letters: int) -> list[str]:
    """The `count` reference n-grams (of at least min_letters letters) the hypotheses lack most often."""
    missed = Counter()
    for res in results:
        hyp = ngrams(res.hyp, n)
        for g, c in ngrams(res.ref, n).items():
            if c > hyp[g] and len(g.replace(" ", "")) >= min_letters:
                missed[g] += c - hyp[g]
    return [g for g, _ in sorted(missed.items(), key=lambda kv: (-kv[1], kv[0]))[:count]]


def recall(results: list[Result], phrases: set[str], n: int) -> tuple[int, int, int]:
    """(reference occurrences of `phrases` also in the hypothesis, their reference occurrences, hypothesis
    occurrences beyond the reference's: false alarms), counted per utterance."""
    hit = total = false = 0
    for res in results:
        ref, hyp = ngrams(res.ref, n), ngrams(res.hyp, n)
        for g in phrases:
            hit += min(ref[g], hyp[g])
            total += ref[g]
            false += max(0, hyp[g] - ref[g])
    return hit, total, false


def unrelated_phrases(path: Path, refs: list[list[str]], n: int, seed: int, alphabet, rule: str) -> list[str]:
    """n distinct word pairs of the text that the BPE model can spell and whose words occur in no reference (rule
    "words"), or that occur as a pair in no reference (rule "pairs": for a tiny vocabulary)."""
    test_words = {w for ref in refs for w in ref}
    test_pairs = {f"{a} {b}" for ref in refs for a, b in zip(ref, ref[1:])}
    opener = gzip.open if path.suffix == ".gz" else open
    pairs = set()
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            words = line.upper().split()
            for a, b in zip(words, words[1:]):
                unseen = (a not in test_words and b not in test_words) if rule == "words" else (
                    f"{a} {b}" not in test_pairs)
                if unseen and set(a + b) <= alphabet:
                    pairs.add(f"{a} {b}")
    pairs = sorted(pairs)
    if len(pairs) < n:
        raise SystemExit(f"{path}: only {len(pairs)} word pairs without test-set words, {n} wanted")
    return [pairs[i] for i in np.random.default_rng(seed).choice(len(pairs), size=n, replace=False)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--epoch", type=int, default=0)
    p.add_argument("--avg", type=int, default=1)
    p.add_argument("--test-set", default="test-clean", help="a test set of the training data config")
    p.add_argument("--test-dir", default="", help="a LibriSpeech-layout folder instead of --test-set")
    p.add_argument("--manifest-dir", default="")
    p.add_argument("--max-duration", type=float, default=300.0)
    p.add_argument("--unrelated-text", required=True, help="text (.gz too) the unrelated word pairs come from")
    p.add_argument("--num-hotwords", type=int, default=20)
    p.add_argument("--ngram", type=int, default=1, help="hotwords: missed words (1) or word n-grams")
    p.add_argument("--min-letters", type=int, default=4, help="shortest missed word (n-gram) used as a hotword")
    p.add_argument("--num-unrelated", type=int, default=100)
    p.add_argument("--unrelated-rule", choices=("words", "pairs"), default="words",
                   help="unrelated pairs: no word of them in the test set, or only the pair not in it")
    p.add_argument("--score", type=float, default=SearchConfig.hotword_score, help="bonus per hotword token")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--lm", default="", help="also fuse this token n-gram (weights of modified_beam_search_lm)")
    p.add_argument("--lexicon", default="")
    p.add_argument("--word-lm", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    lm_weights = dict(lm_scale=0.4, lm_bonus=1.5, word_lm_scale=0.3, word_lm_bonus=1.0)  # conf/decode/..._lm.yaml
    inf = load_inference(InferenceConfig(exp_dir=args.exp_dir, epoch=args.epoch, avg=args.avg, device="cpu",
                                         lm=args.lm, lexicon=args.lexicon, word_lm=args.word_lm, **lm_weights))
    start = time.perf_counter()
    batches = encoder_outputs(args, inf)
    tok = inf.tokenizer

    def hotword_fusion(phrases: list[str]):
        hot = HotwordFusion(ContextGraph(encode_hotwords(parse_hotwords("\n".join(phrases)), tok, args.score)),
                            tok.vocab_size)
        return hot if inf.fusion is None else SumFusion([inf.fusion, hot])

    base = decode(inf, batches, inf.fusion, args.beam)
    hotwords = missed_phrases(base, args.num_hotwords, args.ngram, args.min_letters)
    unrelated = unrelated_phrases(Path(args.unrelated_text), [res.ref for res in base], args.num_unrelated, args.seed,
                                  tok.alphabet, args.unrelated_rule)
    runs = {"none": base, "missed": decode(inf, batches, hotword_fusion(hotwords), args.beam),
            "unrelated": decode(inf, batches, hotword_fusion(unrelated), args.beam)}
    counts = {"none": 0, "missed": len(hotwords), "unrelated": len(unrelated)}

    lm = f", {inf.fusion_name}" if inf.fusion_name else ""
    print(f"{args.exp_dir} ({inf.description}), {args.test_dir or args.test_set}: {len(base)} utterances, "
          f"modified beam search beam {args.beam}{lm}, hotword score {args.score:g}, "
          f"{time.perf_counter() - start:.0f} s")
    print(f"missed {'words' if args.ngram == 1 else f'{args.ngram}-grams'} as hotwords: {' / '.join(hotwords)}")
    print(f"unrelated (first 5): {' / '.join(unrelated[:5])}\n")
    print("| hotword list | phrases | recall of the missed phrases | false alarms | WER % | ins / del / sub |")
    print("|---|---|---|---|---|---|")
    for name, results in runs.items():
        hit, total, false = recall(results, set(hotwords), args.ngram)
        s = compute_wer(results)
        print(f"| {name} | {counts[name]} | {hit}/{total} = {100 * hit / max(total, 1):.1f}% | {false} | "
              f"{s.wer:.2f} | {s.insertions} / {s.deletions} / {s.substitutions} |")


if __name__ == "__main__":
    main()
