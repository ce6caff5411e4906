"""Tokenise documents into fixed-length windows and mark which positions get cached.

Causal LMs: documents are tokenised without special tokens, joined by the EOS token and packed
into consecutive windows of `seq_len` tokens (the usual pre-training layout). Encoders: each
document is cut into chunks of `seq_len - 2` tokens, each framed as [CLS] chunk [SEP] and padded.
Cached positions ("keep") exclude every special token (BOS/EOS/CLS/SEP/padding) and position 0
of each window: SmolLM2's position 0 is an attention sink with norms ~150x the others.

The plan is built up front (tokenising runs ~100x faster than the model) and stops at the
first window that completes the token budget, so its size and digest are known before any
forward pass; that makes caching resumable by window index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

import numpy as np

from sae_core.lm.models import LanguageModel
from sae_core.lm.text import Document
from sae_core.errors import UserError

_BATCH_CHARS = 1 << 20
SKIPPED = "special tokens (BOS/EOS/CLS/SEP/padding) and position 0 of every window"


@dataclass
class WindowPlan:
    """Token windows [W, S] (int32 ids) with their attention mask and the mask of positions to cache."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    keep: np.ndarray
    documents: int

    @property
    def windows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def row_offsets(self) -> np.ndarray:
        """Store row at which each window's cached positions start, plus the total at the end."""
        return np.concatenate([[0], np.cumsum(self.keep.sum(axis=1))])

    def digest(self) -> str:
        """sha256 of the windows: identifies the exact text positions a cache covers."""
        h = hashlib.sha256()
        for a in (self.input_ids, self.attention_mask, self.keep):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def subset(self, idx: np.ndarray | slice) -> WindowPlan:
        """The windows at `idx`, as a plan of their own."""
        return WindowPlan(self.input_ids[idx], self.attention_mask[idx], self.keep[idx], self.documents)


def plan_windows(lm: LanguageModel, documents: Iterable[Document], seq_len: int, tokens: int) -> WindowPlan:
    """Windows covering the first `tokens` cacheable positions of `documents` (UserError if short)."""
    _check_seq_len(lm, seq_len)
    if tokens <= 0:
        raise UserError(f"--tokens must be positive, got {tokens}")
    make = _packed_windows if lm.kind == "causal" else _framed_windows
    special = np.fromiter(sorted(lm.special_ids), dtype=np.int64)
    pad = _pad_id(lm.tokenizer)
    chunks_ids, chunks_mask, chunks_keep = [], [], []
    rows, counter = 0, _Counter()
    for ids, mask in make(lm, _tokenised(lm, documents, counter), seq_len, pad):
        keep = mask & ~np.isin(ids, special)
        keep[:, 0] = False
        chunks_ids.append(ids.astype(np.int32))  # half the memory of int64 for large budgets
        chunks_mask.append(mask)
        chunks_keep.append(keep)
        per_window = np.cumsum(keep.sum(axis=1))
        if rows + int(per_window[-1]) >= tokens:
            last = int(np.searchsorted(per_window, tokens - rows)) + 1
            chunks_ids[-1], chunks_mask[-1], chunks_keep[-1] = chunks_ids[-1][:last], mask[:last], keep[:last]
            rows = tokens
            break
        rows += int(per_window[-1])
    if rows == 0:
        raise UserError("--text: the text is empty (no cacheable tokens)")
    if rows < tokens:
        raise UserError(f"--tokens {tokens}: the text gives only {rows} cacheable tokens "
                        f"({counter.documents} documents; {SKIPPED} skipped); add text or lower --tokens")
    return WindowPlan(np.concatenate(chunks_ids), np.concatenate(chunks_mask), np.concatenate(chunks_keep),
                      counter.documents)


def _check_seq_len(lm: LanguageModel, seq_len: int) -> None:
    least = 2 if lm.kind == "causal" else 4
    if not least <= seq_len <= lm.max_positions:
        raise UserError(f"--seq-len must be in [{least}, {lm.max_positions}] for {lm.name}, got {seq_len}")


def _pad_id(tok) -> int:
    return int(next(t for t in (tok.pad_token_id, tok.eos_token_id, 0) if t is not None))


@dataclass
class _Counter:
    documents: int = 0


def _tokenised(lm: LanguageModel, documents: Iterable[Document], counter: _Counter) -> Iterator[np.ndarray]:
    """Token ids of each document (no special tokens), tokenised a batch of documents at a time
    (batches end at _BATCH_CHARS of text, so a small budget does not tokenise a whole corpus)."""
    batch: list[str] = []
    size = 0
    for doc in chain(documents, [None]):
        if doc is not None:
            batch.append(doc.text)
            size += len(doc.text)
        if batch and (doc is None or size >= _BATCH_CHARS):
            counter.documents += len(batch)
            encoded = lm.tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
            batch, size = [], 0
            for ids in encoded:
                if ids:
                    yield np.asarray(ids, dtype=np.int64)


def _packed_windows(lm: LanguageModel, docs: Iterator[np.ndarray], seq_len: int, pad: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Causal LM layout: documents joined by EOS, cut into full windows (the last one padded)."""
    tok = lm.tokenizer
    sep = tok.eos_token_id if tok.eos_token_id is not None else tok.bos_token_id
    tail = np.zeros(0, dtype=np.int64)
    for ids in docs:
        stream = np.concatenate([tail, ids] + ([np.array([sep], dtype=np.int64)] if sep is not None else []))
        full = len(stream) // seq_len
        tail = stream[full * seq_len:]
        if full:
            win = stream[: full * seq_len].reshape(full, seq_len)
            yield win, np.ones_like(win, dtype=bool)
    if len(tail):
        yield _padded([tail], seq_len, pad)


def _framed_windows(lm: LanguageModel, docs: Iterator[np.ndarray], seq_len: int, pad: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Encoder layout: each document cut into chunks framed as [CLS] chunk [SEP], padded."""
    tok = lm.tokenizer
    first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    last = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    head = np.array([first] if first is not None else [], dtype=np.int64)
    foot = np.array([last] if last is not None else [], dtype=np.int64)
    body = seq_len - len(head) - len(foot)
    for ids in docs:
        rows = [np.concatenate([head, ids[i: i + body], foot]) for i in range(0, len(ids), body)]
        yield _padded(rows, seq_len, pad)


def _padded(rows: list[np.ndarray], seq_len: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((len(rows), seq_len), pad, dtype=np.int64)
    mask = np.zeros((len(rows), seq_len), dtype=bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = True
    return ids, mask
