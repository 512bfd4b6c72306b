"""The typed batch the model trains and decodes on, and its making from lhotse's batch dict.

lhotse's `K2SpeechRecognitionDataset` gives a dict: batch["inputs"] (B', T, F) float features (one row per cut) and
batch["supervisions"] with "text" (list[str]), "sequence_idx" (B,), "start_frame" (B,), "num_frames" (B,) and "cut"
(the cuts, return_cuts=True). `lhotse_to_batch` turns it into a `Batch`, one row per supervision. The loaders of
asr.data.loaders do it inside the dataset (`ToBatch`), so DataLoader workers tokenize and every loader yields Batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from asr.data.tokenizer import Tokenizer
from asr.data.unreadable import UNREADABLE_KEY


@dataclass
class Batch:
    """One batch of utterances, padded.

    features: (B, T, F) float features, zero after each row's feature_lens frames.
    feature_lens: (B,) int64 valid frames of each row.
    tokens: (B, U) int64 token ids, padded with the blank id (U >= 1).
    token_lens: (B,) int64 tokens of each row.
    cut_ids: the B cut ids (for logs of dropped utterances and decoding results).
    texts: the B transcripts the tokens were made from (the references of decoding).
    unreadable_cut_ids: cuts of this batch left out because their features could not be loaded
        (asr.data.unreadable); the trainer counts and logs them.
    """

    features: Tensor
    feature_lens: Tensor
    tokens: Tensor
    token_lens: Tensor
    cut_ids: list[str]
    texts: list[str]
    unreadable_cut_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        B = self.features.size(0) if self.features.dim() == 3 else -1
        if not (
            self.features.dim() == 3
            and self.feature_lens.shape == (B,)
            and self.tokens.dim() == 2
            and self.tokens.size(0) == B
            and self.token_lens.shape == (B,)
            and len(self.cut_ids) == len(self.texts) == B
        ):
            raise ValueError(
                f"Batch shapes disagree: features {tuple(self.features.shape)} (want (B, T, F)), feature_lens "
                f"{tuple(self.feature_lens.shape)}, tokens {tuple(self.tokens.shape)}, token_lens "
                f"{tuple(self.token_lens.shape)}, {len(self.cut_ids)} cut ids, {len(self.texts)} texts"
            )

    def __len__(self) -> int:
        return len(self.cut_ids)

    def _map(self, fn) -> Batch:
        return Batch(**{f.name: fn(getattr(self, f.name)) if isinstance(getattr(self, f.name), Tensor)
                        else getattr(self, f.name) for f in fields(self)})  # fmt: skip

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Batch:
        """The tensors on `device`; copies from pinned memory (`pin_memory`) overlap with the host's work."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """The tensors in page-locked memory (DataLoader(pin_memory=True) calls it on a custom batch type)."""
        return self._map(lambda t: t.pin_memory())

    def select(self, rows: Tensor) -> Batch:
        """The rows `rows` ((b,) int64 indexes), cropped to their longest features and tokens."""
        rows_l = rows.tolist()
        feature_lens, token_lens = self.feature_lens[rows], self.token_lens[rows]
        T = int(feature_lens.max()) if len(rows_l) else 0
        U = max(int(token_lens.max()) if len(rows_l) else 1, 1)
        return Batch(
            features=self.features[rows.to(self.features.device)][:, :T],  # (b, T', F)
            feature_lens=feature_lens,
            tokens=self.tokens[rows.to(self.tokens.device)][:, :U],  # (b, U')
            token_lens=token_lens,
            cut_ids=[self.cut_ids[i] for i in rows_l],
            texts=[self.texts[i] for i in rows_l],
        )


def lhotse_to_batch(batch: dict, tokenizer: Tokenizer) -> Batch:
    """The Batch of a K2SpeechRecognitionDataset batch, one row per supervision, in supervision order.

    Features: rows gathered by sequence_idx, cropped at start_frame, zero-padded; tokens: the tokenizer's ids of each
    supervision's text, padded with the blank id. The dataset must be built with return_cuts=True (the cut ids).
    """
    inputs: Tensor = batch["inputs"]  # (B', T, F)
    sup = batch["supervisions"]
    if not sup.get("cut"):
        raise ValueError("the lhotse batch has no cuts: build K2SpeechRecognitionDataset with return_cuts=True")
    seq_idx = torch.as_tensor(sup["sequence_idx"], dtype=torch.int64)
    start = torch.as_tensor(sup["start_frame"], dtype=torch.int64) if "start_frame" in sup else None
    x_lens = torch.as_tensor(sup["num_frames"], dtype=torch.int64) if "num_frames" in sup else None
    if x_lens is None:  # on-the-fly features of a padded batch: every row is its full length
        x_lens = torch.full((len(seq_idx),), inputs.size(1), dtype=torch.int64)
    if start is None or bool((start == 0).all()):
        x = inputs.index_select(0, seq_idx)[:, : int(x_lens.max())]  # (B, T, F)
    else:
        x = inputs.new_zeros(len(seq_idx), int(x_lens.max()), inputs.size(2))  # (B, T, F)
        for i, (r, s, n) in enumerate(zip(seq_idx.tolist(), start.tolist(), x_lens.tolist())):
            x[i, :n] = inputs[r, s : s + n]
    texts = list(sup["text"])
    tokens = tokenizer.encode(texts)
    y_lens = torch.tensor([len(t) for t in tokens], dtype=torch.int64)
    y = torch.full((len(tokens), max(1, int(y_lens.max()) if len(tokens) else 1)), tokenizer.blank_id,
                   dtype=torch.int64)  # (B, U)
    for i, t in enumerate(tokens):
        y[i, : len(t)] = torch.tensor(t, dtype=torch.int64)
    return Batch(features=x, feature_lens=x_lens, tokens=y, token_lens=y_lens, cut_ids=[c.id for c in sup["cut"]],
                 texts=texts)  # fmt: skip


class ToBatch(torch.utils.data.Dataset):
    """A lhotse dataset whose batches come out as `Batch` (converted where the batch is made: in the workers)."""

    def __init__(self, dataset: torch.utils.data.Dataset, tokenizer: Tokenizer) -> None:
        self.dataset, self.tokenizer = dataset, tokenizer

    def __getitem__(self, cuts) -> Batch:
        lhotse_batch = self.dataset[cuts]
        batch = lhotse_to_batch(lhotse_batch, self.tokenizer)
        batch.unreadable_cut_ids = list(lhotse_batch.get(UNREADABLE_KEY, []))  # asr.data.unreadable's
        return batch
