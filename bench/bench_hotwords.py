"""Hotwords on a test set: recall of words the model gets wrong when they are the hotwords, and the WER cost of a
list of unrelated phrases. Prints a Markdown table (recipes/librispeech/RESULTS.md).

    cd recipes/librispeech
    nice -n 10 ../../.venv/bin/python ../../bench/bench_hotwords.py --exp-dir exp/demo --test-set test-clean \
        --unrelated-text download/demo/lm/librispeech-lm-norm.txt.gz
    ... --test-dir download/demo/LibriSpeech/test-clean          # a LibriSpeech-layout folder instead
    nice -n 10 .venv/bin/python bench/bench_hotwords.py --tone /tmp/tone --ngram 2 --min-letters 1 \
        --tone-test-words ABC --unrelated-words 5                    # the tests' tone language, from the repo root

Modified beam search (beam 4, no LM unless --lm/--lexicon/--word-lm, then summed with it), three runs on encoder
outputs computed once:
- none: the unbiased search;
- missed: the --num-hotwords reference words (--ngram 1) or word n-grams of at least --min-letters letters that the
  unbiased search misses most often, one per line: the usual "biasing list of the test set's rare words"
  evaluation (icefall, WeNet), so recall is measured on the words the list was made from;
- unrelated: --num-unrelated phrases of --unrelated-words consecutive words of --unrelated-text's sentences, none
  of whose words is in any reference of the test set (--unrelated-rule phrases: only the phrase is in none, for a
  vocabulary as small as the tone language's), seeded: what a list that does not apply costs.
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


def unrelated_phrases(path: Path, refs: list[list[str]], n: int, seed: int, alphabet, rule: str,
                      length: int) -> list[str]:
    """n distinct phrases of `length` consecutive words of the text that the BPE model can spell and whose words
    occur in no reference (rule "words"), or that occur as a phrase in no reference (rule "phrases": for a tiny
    vocabulary)."""
    test_words = {w for ref in refs for w in ref}
    test_phrases = {g for ref in refs for g in ngrams(ref, length)}
    opener = gzip.open if path.suffix == ".gz" else open
    found = set()
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            for g in ngrams(line.upper().split(), length):
                unseen = not set(g.split()) & test_words if rule == "words" else g not in test_phrases
                if unseen and set(g) <= alphabet:
                    found.add(g)
    found = sorted(found)
    if len(found) < n:
        raise SystemExit(f"{path}: only {len(found)} phrases of {length} words unrelated to the test set, {n} wanted")
    return [found[i] for i in np.random.default_rng(seed).choice(len(found), size=n, replace=False)]


def tone_setup(work: Path, utterances: int, test_words: str, seed: int) -> tuple[str, str, str]:
    """The tone-language model of the tests (tests/tone_asr.py, trained here in about a minute on all six words), a
    LibriSpeech-layout folder of `utterances` new test utterances spoken with the words of `test_words` only, and
    1000 sentences of the other words (of all six when the test uses all) for unrelated phrases; returns (exp dir,
    test folder, text file). Run from the repository root."""
    import soundfile as sf

    from tests.tone_asr import SR, WORDS, synth, train_tiny

    trained = train_tiny(work / "model")
    folder = work / "test" / "1" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 100)
    spoken = [w for w in WORDS if w in test_words]
    lines = []
    for i in range(utterances):
        words = [str(w) for w in rng.choice(spoken, size=int(rng.integers(2, 7)))]
        sf.write(folder / f"1-1-{i:04d}.flac", synth(words, rng), SR)
        lines.append(f"1-1-{i:04d} {' '.join(words)}\n")
    (folder / "1-1.trans.txt").write_text("".join(lines))
    others = [w for w in WORDS if w not in spoken] or list(WORDS)
    text = work / "text.txt"
    text.write_text("".join(" ".join(rng.choice(others, size=8)) + "\n" for _ in range(1000)))
    return str(trained.exp_dir), str(work / "test"), str(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", default="")
    p.add_argument("--epoch", type=int, default=0)
    p.add_argument("--avg", type=int, default=1)
    p.add_argument("--test-set", default="test-clean", help="a test set of the training data config")
    p.add_argument("--test-dir", default="", help="a LibriSpeech-layout folder instead of --test-set")
    p.add_argument("--manifest-dir", default="")
    p.add_argument("--max-duration", type=float, default=300.0)
    p.add_argument("--unrelated-text", default="", help="text (.gz too) the unrelated phrases come from")
    p.add_argument("--num-hotwords", type=int, default=20)
    p.add_argument("--ngram", type=int, default=1, help="hotwords: missed words (1) or word n-grams")
    p.add_argument("--min-letters", type=int, default=4, help="shortest missed word (n-gram) used as a hotword")
    p.add_argument("--num-unrelated", type=int, default=100)
    p.add_argument("--unrelated-words", type=int, default=2, help="words per unrelated phrase")
    p.add_argument("--unrelated-rule", choices=("words", "phrases"), default="words",
                   help="unrelated phrases: no word of them in the test set, or only the phrase not in it")
    p.add_argument("--tone", default="", help="instead of --exp-dir/--test-*/--unrelated-text: train the tests' "
                   "tone-language model in this folder and synthesise --tone-utts test utterances")
    p.add_argument("--tone-utts", type=int, default=100)
    p.add_argument("--tone-test-words", default="ABCDEF", help="the words the tone test utterances use")
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
    if args.tone:
        tone = tone_setup(Path(args.tone), args.tone_utts, args.tone_test_words, args.seed)
        args.exp_dir, args.test_dir, args.unrelated_text = tone
    if not (args.exp_dir and args.unrelated_text):
        p.error("give --exp-dir and --unrelated-text, or --tone")

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
                                  tok.alphabet, args.unrelated_rule, args.unrelated_words)
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
