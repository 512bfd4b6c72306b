"""Train the sentencepiece model of a recipe on its training transcripts (prepare.sh stage 4).

    python -m asr.data.bpe --manifests data/manifests --lang-dir data/lang_bpe_500 --vocab-size 500
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import sentencepiece as spm

from asr.progress import progress

log = logging.getLogger(__name__)

#: Ids 0 and 1 (icefall's layout); <unk> follows at 2.
USER_SYMBOLS = ("<blk>", "<sos/eos>")


def train_bpe(transcripts: list[str], lang_dir: Path, vocab_size: int = 500, model_type: str = "unigram",
              character_coverage: float = 1.0) -> Path:
    """Train `lang_dir/bpe.model` on `transcripts`; returns its path.

    Ids: `<blk>` = 0, `<sos/eos>` = 1, `<unk>` = 2, no bos/eos pieces (icefall's train_bpe_model.py layout).
    Raises ValueError with a clear message when the text is too small for `vocab_size` units.
    """
    lang_dir.mkdir(parents=True, exist_ok=True)
    text_file = lang_dir / "transcript_words.txt"
    text_file.write_text("\n".join(transcripts) + "\n")
    prefix = lang_dir / "bpe"
    try:
        spm.SentencePieceTrainer.train(
            input=str(text_file), vocab_size=vocab_size, model_type=model_type, model_prefix=str(prefix),
            character_coverage=character_coverage, user_defined_symbols=list(USER_SYMBOLS),
            unk_id=len(USER_SYMBOLS), bos_id=-1, eos_id=-1, input_sentence_size=100_000_000,
            minloglevel=2)
    except RuntimeError as e:
        raise ValueError(f"sentencepiece could not make {vocab_size} units from {len(transcripts)} transcripts "
                         f"(use a smaller --vocab-size): {e}") from e
    return prefix.with_suffix(".model")


def train_transcripts(manifest_dir: Path, prefix: str = "librispeech") -> list[str]:
    """Texts of every `<prefix>_supervisions_train*.jsonl.gz` in `manifest_dir`."""
    from lhotse import load_manifest_lazy

    files = sorted(manifest_dir.glob(f"{prefix}_supervisions_train*.jsonl.gz"))
    if not files:
        raise FileNotFoundError(f"no {prefix}_supervisions_train*.jsonl.gz in {manifest_dir} (run stage 1 first)")
    texts = []
    for f in files:
        texts += [s.text for s in progress(load_manifest_lazy(f), desc=f"read {f.name}", unit="utt") if s.text]
    return texts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifests", type=Path, required=True, help="folder with the supervision manifests")
    ap.add_argument("--lang-dir", type=Path, required=True)
    ap.add_argument("--vocab-size", type=int, default=500)
    ap.add_argument("--model-type", default="unigram")
    ap.add_argument("--prefix", default="librispeech", help="read <prefix>_supervisions_train*.jsonl.gz")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    texts = train_transcripts(args.manifests, args.prefix)
    # sentencepiece trains in one call, with no progress of its own: a line before it says what it is doing
    log.info("training a %d-unit %s BPE model on %d transcripts (%.1f M characters)...", args.vocab_size,
             args.model_type, len(texts), sum(map(len, texts)) / 1e6)
    t0 = time.time()
    try:
        path = train_bpe(texts, args.lang_dir, args.vocab_size, args.model_type)
    except ValueError as e:
        raise SystemExit(f"asr.data.bpe: {e}")
    log.info("BPE model (%s, %d units) from %d transcripts in %.0f s: %s", args.model_type, args.vocab_size,
             len(texts), time.time() - t0, path)


if __name__ == "__main__":
    main()
