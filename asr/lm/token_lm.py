"""A token n-gram LM over the recipe's BPE pieces: trained from LM text, saved as ARPA, loaded for decoding.

    python -m asr.lm.token_lm --bpe-model data/lang_bpe_32/bpe.model --order 8 \
        --text download/demo/lm/librispeech-lm-norm.txt.gz --out data/lm_bpe_32/tokens_8gram.arpa

Without --text, the training transcripts of --manifests are the LM text. Lines are upper-cased and encoded with the
BPE model; a line that needs `<unk>` (a character the BPE model cannot spell) or is empty is skipped and counted.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from asr.data.tokenizer import Tokenizer
from asr.lm.kneser_ney import train_kneser_ney
from asr.lm.fusion import FusionScorer, LexiconFusion, NgramFusion, SumFusion
from asr.lm.ngram import NgramLm, read_arpa, write_arpa

log = logging.getLogger(__name__)

WORDS_FILE = "words.txt"  # the lexicon written beside the ARPA file: "WORD COUNT" lines
BOS_EOS = "<sos/eos>"  # the BPE piece that serves as both <s> and </s> (id 1 in asr.data.bpe's models)


def read_lines(paths: Iterable[Path], max_lines: int = 0) -> Iterator[str]:
    """Lines of text files (".gz" read compressed), at most `max_lines` in all when > 0."""
    n = 0
    for path in paths:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
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


def train_token_lm(lines: Iterable[str], tokenizer: Tokenizer, order: int, out: Path) -> dict[str, int]:
    """Trains an interpolated Kneser-Ney LM on `lines` and writes it as ARPA to `out`, and the words of the kept
    lines with their counts, most frequent first, to `out`'s folder/words.txt (the lexicon); returns line counts."""
    bos, eos = _special_ids(tokenizer)
    stats = {"lines": 0, "skipped_empty": 0, "skipped_unk": 0}
    sentences: list[list[int]] = []
    batch: list[str] = []
    words: Counter[str] = Counter()

    def flush() -> None:
        for text, ids in zip(batch, tokenizer.encode(batch)):
            if not ids:
                stats["skipped_empty"] += 1
            elif tokenizer.unk_id in ids:
                stats["skipped_unk"] += 1
            else:
                sentences.append(ids)
                words.update(text.split())
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
    tables = train_kneser_ney(sentences, order, tokenizer.vocab_size, bos, eos, exclude=(tokenizer.blank_id,))
    symbols = [tokenizer.sp.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    write_arpa(out, tables.ngrams, symbols, bos, eos, tables.bos_backoff)
    (out.parent / WORDS_FILE).write_text("".join(f"{w} {c}\n" for w, c in words.most_common()), encoding="utf-8")
    stats["words"] = len(words)
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


def load_fusion(lm_path: str, lm_scale: float, lm_bonus: float, lexicon_path: str,
                tokenizer: Tokenizer) -> tuple[FusionScorer | None, str]:
    """The shallow-fusion scorer of a decoding config and a short name for result files, e.g.
    "lm_tokens_6gram_scale_0.5_bonus_0.5_lexicon"; (None, "") when neither an LM nor a lexicon is given."""
    scorers: list[FusionScorer] = []
    names: list[str] = []
    if lm_path:
        scorers.append(NgramFusion(load_token_lm(lm_path, tokenizer), lm_scale, lm_bonus))
        names.append(f"lm_{Path(lm_path).name.split('.')[0]}_scale_{lm_scale:g}_bonus_{lm_bonus:g}")
    if lexicon_path:
        path = Path(lexicon_path)
        if not path.is_file():
            raise FileNotFoundError(f"no lexicon at {path}: run recipes/librispeech/prepare.sh (stage 5) first")
        words = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        pieces = [tokenizer.sp.id_to_piece(i) for i in range(tokenizer.vocab_size)]
        scorers.append(LexiconFusion(words, pieces))
        names.append("lexicon")
    if not scorers:
        return None, ""
    return (scorers[0] if len(scorers) == 1 else SumFusion(scorers)), "_".join(names)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bpe-model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="ARPA file to write (.gz: compressed)")
    ap.add_argument("--order", type=int, default=6)
    ap.add_argument("--text", type=Path, action="append", default=[], help="LM text file(s), one sentence a line")
    ap.add_argument("--manifests", type=Path, help="without --text: the train transcripts of these manifests")
    ap.add_argument("--max-lines", type=int, default=0, help="read at most this many lines (0: all)")
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

            lines = train_transcripts(args.manifests)
        else:
            raise ValueError("give --text FILE or --manifests DIR")
        stats = train_token_lm(lines, tokenizer, args.order, args.out)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"asr.lm.token_lm: {e}")
    log.info("%d-gram token LM -> %s in %.0f s: %s", args.order, args.out, time.time() - t0, stats)


if __name__ == "__main__":
    main()
