"""A token n-gram LM over the recipe's BPE pieces: trained from LM text, saved as ARPA, loaded for decoding.

    python -m asr.lm.token_lm --bpe-model data/lang_bpe_64/bpe.model --order 8 \
        --text download/demo/lm/librispeech-lm-norm.txt.gz --out data/lm_bpe_64/tokens_8gram.arpa

Without --text, the training transcripts of --manifests are the LM text. Lines are upper-cased and encoded with the
BPE model; a line that needs `<unk>` (a character the BPE model cannot spell) or is empty is skipped and counted.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from asr.data.tokenizer import Tokenizer
from asr.lm.kneser_ney import train_kneser_ney
from asr.lm.ngram import NgramLm, open_text, read_arpa, write_arpa
from asr.progress import progress

log = logging.getLogger(__name__)

WORDS_FILE = "words.txt"  # the lexicon written beside the ARPA file: "WORD COUNT" lines
BOS_EOS = "<sos/eos>"  # the BPE piece that serves as both <s> and </s> (id 1 in asr.data.bpe's models)


def read_lines(paths: Iterable[Path], max_lines: int = 0) -> Iterator[str]:
    """Lines of text files (".gz" read compressed), at most `max_lines` in all when > 0."""
    n = 0
    for path in paths:
        with open_text(path) as f:
            for line in f:
                if max_lines and n >= max_lines:
                    return
                n += 1
                yield line


def _special_ids(tokenizer: Tokenizer) -> tuple[int, int]:
    sos = tokenizer.sp.piece_to_id(BOS_EOS)
    if tokenizer.sp.id_to_piece(sos) != BOS_EOS:
        raise ValueError(f"the BPE model has no {BOS_EOS} piece for sentence start and end")
    return sos, sos


def train_token_lm(lines: Iterable[str], tokenizer: Tokenizer, order: int, out: Path,
                   word_order: int = 0) -> dict[str, int]:
    """Trains an interpolated Kneser-Ney LM on `lines` and writes it as ARPA to `out`, and the words of the kept
    lines with their counts, most frequent first, to `out`'s folder/words.txt (the lexicon); with word_order > 0
    also a word n-gram over those words, words_<word_order>gram.arpa beside them. Returns line counts."""
    bos, eos = _special_ids(tokenizer)
    stats = {"lines": 0, "skipped_empty": 0, "skipped_unk": 0}
    sentences: list[list[int]] = []
    batch: list[str] = []
    words: Counter[str] = Counter()
    word_index: dict[str, int] = {}  # order of first appearance, while reading
    word_sentences: list[list[int]] = []

    def flush() -> None:
        for text, ids in zip(batch, tokenizer.encode(batch)):
            if not ids:
                stats["skipped_empty"] += 1
            elif tokenizer.unk_id in ids:
                stats["skipped_unk"] += 1
            else:
                sentences.append(ids)
                split = text.split()
                words.update(split)
                if word_order > 0:
                    word_sentences.append([word_index.setdefault(w, len(word_index)) for w in split])
        batch.clear()

    for line in lines:
        stats["lines"] += 1
        text = " ".join(line.upper().split())
        if text:
            batch.append(text)
        else:
            stats["skipped_empty"] += 1
        if len(batch) >= 10000:
            flush()
    flush()
    log.info("counting %d-grams of %d sentences and writing %s...", order, len(sentences), out.name)
    tables = train_kneser_ney(sentences, order, tokenizer.vocab_size, bos, eos, exclude=(tokenizer.blank_id,))
    symbols = [tokenizer.sp.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    write_arpa(out, tables.ngrams, symbols, bos, eos, tables.bos_backoff)
    ranked = [w for w, _ in words.most_common()]
    (out.parent / WORDS_FILE).write_text("".join(f"{w} {words[w]}\n" for w in ranked), encoding="utf-8")
    stats["words"] = len(words)
    if word_order > 0:  # word ids: 0 unused, 1 <s>/</s>, 2 + rank in words.txt
        remap = np.zeros(len(word_index), dtype=np.int64)
        for rank, w in enumerate(ranked):
            remap[word_index[w]] = rank + 2
        word_tables = train_kneser_ney([remap[s] for s in word_sentences], word_order, len(ranked) + 2, 1, 1)
        write_arpa(out.parent / f"words_{word_order}gram.arpa", word_tables.ngrams, ["<eps>", "<sos/eos>", *ranked],
                   1, 1, word_tables.bos_backoff)
        for n, (ids, _, _) in enumerate(word_tables.ngrams, start=1):
            stats[f"word {n}-grams"] = len(ids)
    stats["sentences"] = len(sentences)
    stats["tokens"] = sum(len(s) for s in sentences)
    for n, (ids, _, _) in enumerate(tables.ngrams, start=1):
        stats[f"{n}-grams"] = len(ids)
    return stats


def load_token_lm(path: str | Path, tokenizer: Tokenizer) -> NgramLm:
    """Reads an ARPA token LM written for `tokenizer`'s BPE model (or by any tool, over its pieces)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no LM at {path}: run recipes/librispeech/prepare.sh (stage 5) first")
    bos, eos = _special_ids(tokenizer)
    symbol_ids = {tokenizer.sp.id_to_piece(i): i for i in range(tokenizer.vocab_size)}
    return read_arpa(path, symbol_ids, bos, eos, tokenizer.vocab_size)


def load_word_lm(path: str | Path, words: list[str]) -> NgramLm:
    """Reads a word ARPA LM over `words` (ids 2 + index; 1 is <s>/</s>), as train_token_lm writes it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no word LM at {path}: run recipes/librispeech/prepare.sh (stage 5) first")
    symbol_ids = {w: i + 2 for i, w in enumerate(words)}
    return read_arpa(path, symbol_ids, 1, 1, len(words) + 2)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bpe-model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="ARPA file to write (.gz: compressed)")
    ap.add_argument("--order", type=int, default=6)
    ap.add_argument("--text", type=Path, action="append", default=[], help="LM text file(s), one sentence a line")
    ap.add_argument("--manifests", type=Path, help="without --text: the train transcripts of these manifests")
    ap.add_argument("--prefix", default="librispeech", help="with --manifests: <prefix>_supervisions_train*")
    ap.add_argument("--max-lines", type=int, default=0, help="read at most this many lines (0: all)")
    ap.add_argument("--word-order", type=int, default=0, help="also a word n-gram of this order (0: none)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    t0 = time.time()
    try:
        tokenizer = Tokenizer(args.bpe_model)
        if args.text:
            missing = [str(p) for p in args.text if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"no LM text at {', '.join(missing)}")
            lines: Iterable[str] = read_lines(args.text, args.max_lines)
        elif args.manifests:
            from asr.data.bpe import train_transcripts

            lines = train_transcripts(args.manifests, args.prefix)
        else:
            raise ValueError("give --text FILE or --manifests DIR")
        lines = progress(lines, desc="LM text", unit="line")  # reading and tokenising; counting follows
        stats = train_token_lm(lines, tokenizer, args.order, args.out, args.word_order)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"asr.lm.token_lm: {e}")
    log.info("%d-gram token LM -> %s in %.0f s: %s", args.order, args.out, time.time() - t0, stats)


if __name__ == "__main__":
    main()
