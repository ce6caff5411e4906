"""Shuffled training batches and ordered eval batches from an ActivationStore.

Batch `step` is a pure function of (store, batch_size, data_seed, window_rows, step), so a
resumed run sees exactly the batches an uninterrupted one would, and every run of a pack reads
the same stream. Shuffling:
- if the train split fits in one window (`window_rows`, from a memory budget), it is loaded
  once (normalised, on the device) and each epoch is a fresh permutation of all rows;
- otherwise each epoch permutes fixed 64Ki-row blocks, groups them into windows that fit the
  budget, loads one window at a time (the next one prefetched on a thread) and permutes its
  rows; the rows of a window that do not fill a whole batch are skipped for that epoch.
Every loaded window is checked for non-finite values.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

from sae_core.errors import UserError
from sae_core.store import ActivationStore

BLOCK_ROWS = 1 << 16
DEFAULT_WINDOW_BYTES = 1 << 30


def window_rows_for(store: ActivationStore, budget_bytes: int = DEFAULT_WINDOW_BYTES) -> int:
    """Rows of fp32 (x and y) that fit in `budget_bytes`; a whole number of blocks, at least one."""
    per_row = 4 * (store.n + (store.o if store.meta.has_targets else 0))
    return max(BLOCK_ROWS, (budget_bytes // per_row) // BLOCK_ROWS * BLOCK_ROWS)


def _generator(*seeds: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(seeds)).generate_state(1)[0]))


class BatchStream:
    """Deterministic shuffled batches (x, y) of the store's train split, normalised, on device."""

    def __init__(self, store: ActivationStore, batch_size: int, data_seed: int, *, device: torch.device | str = "cpu",
                 normalize: bool = True, window_rows: int | None = None):
        self.store = store
        self.batch_size = int(batch_size)
        self.data_seed = int(data_seed)
        self.device = torch.device(device)
        self.scale_x = store.meta.norm_scale if normalize else 1.0
        self.scale_y = store.meta.target_norm_scale if normalize else 1.0
        self.window_rows = window_rows or window_rows_for(store)
        self.train_rows = store.train_rows
        if self.train_rows < self.batch_size:
            raise UserError(f"batch_size {self.batch_size} exceeds the {self.train_rows} training rows of store {store.path}")
        self.single_window = self.train_rows <= self.window_rows
        n_blocks = math.ceil(self.train_rows / BLOCK_ROWS)
        self._blocks = [(b * BLOCK_ROWS, min(self.train_rows, (b + 1) * BLOCK_ROWS)) for b in range(n_blocks)]
        self._epoch_plans: list[list[list[int]]] = []   # epoch -> windows -> block indices
        self._data: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._data_key: tuple | None = None
        self._perm: torch.Tensor | None = None
        self._perm_key: tuple[int, int] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._prefetch: tuple[tuple, Future] | None = None

    # -- planning ---------------------------------------------------------------------------
    def _plan(self, epoch: int) -> list[list[int]]:
        while len(self._epoch_plans) <= epoch:
            e = len(self._epoch_plans)
            if self.single_window:
                self._epoch_plans.append([list(range(len(self._blocks)))])
                continue
            order = torch.randperm(len(self._blocks), generator=_generator(self.data_seed, e, 0)).tolist()
            windows, cur, rows = [], [], 0
            for b in order:
                size = self._blocks[b][1] - self._blocks[b][0]
                if cur and rows + size > self.window_rows:
                    windows.append(cur)
                    cur, rows = [], 0
                cur.append(b)
                rows += size
            windows.append(cur)
            self._epoch_plans.append(windows)
        return self._epoch_plans[epoch]

    def _window_rows(self, blocks: list[int]) -> int:
        return sum(self._blocks[b][1] - self._blocks[b][0] for b in blocks)

    def locate(self, step: int) -> tuple[int, int, int]:
        """(epoch, window, batch within window) of global batch `step`."""
        epoch = 0
        while True:
            for w, blocks in enumerate(self._plan(epoch)):
                nb = self._window_rows(blocks) // self.batch_size
                if step < nb:
                    return epoch, w, step
                step -= nb
            epoch += 1

    # -- loading ----------------------------------------------------------------------------
    def _load(self, blocks: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        xs, ys = [], []
        for b in blocks:
            x, y = self.store.read(*self._blocks[b])
            xs.append(x)
            if y is not None:
                ys.append(y)
        x = torch.from_numpy(np.concatenate(xs))
        y = torch.from_numpy(np.concatenate(ys)) if ys else None
        for name, arr in (("inputs", x), ("targets", y)):
            if arr is not None and not torch.isfinite(arr).all():
                bad = int((~torch.isfinite(arr)).any(dim=1).nonzero()[0, 0])
                raise UserError(f"activation store {self.store.path} has non-finite {name} (train window row {bad})")
        x = (x * self.scale_x).to(self.device)
        y = (y * self.scale_y).to(self.device) if y is not None else None
        return x, y

    def _window(self, epoch: int, w: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The loaded rows of window w of `epoch` and their permutation (loading if needed)."""
        data_key = () if self.single_window else (epoch, w)
        if self._data is None or self._data_key != data_key:
            if self._prefetch is not None and self._prefetch[0] == data_key:
                self._data = self._prefetch[1].result()
            else:
                self._data = self._load(tuple(self._plan(epoch)[w]))
            self._data_key, self._prefetch = data_key, None
            if not self.single_window:
                nxt = (epoch, w + 1) if w + 1 < len(self._plan(epoch)) else (epoch + 1, 0)
                blocks = tuple(self._plan(nxt[0])[nxt[1]])
                self._prefetch = (nxt, self._pool.submit(self._load, blocks))
        if self._perm_key != (epoch, w):
            rows = self._data[0].shape[0]
            self._perm = torch.randperm(rows, generator=_generator(self.data_seed, epoch, w + 1)).to(self.device)
            self._perm_key = (epoch, w)
        return self._data[0], self._data[1], self._perm

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch number `step` (0-based): x [B, n] and targets y [B, o] (y is x for SAEs)."""
        epoch, w, i = self.locate(step)
        x, y, perm = self._window(epoch, w)
        idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
        xb = x.index_select(0, idx)
        return xb, (y.index_select(0, idx) if y is not None else xb)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def eval_batches(store: ActivationStore, *, device: torch.device | str = "cpu", normalize: bool = True,
                 chunk_rows: int = 8192, max_rows: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The held-out split in order, normalised, in chunks: (x, y) with y = x for SAEs."""
    lo, hi = store.eval_range
    if max_rows is not None:
        hi = min(hi, lo + max_rows)
    sx = store.meta.norm_scale if normalize else 1.0
    sy = store.meta.target_norm_scale if normalize else 1.0
    for a in range(lo, hi, chunk_rows):
        x, y = store.read(a, min(hi, a + chunk_rows))
        xt = torch.from_numpy(x)
        if not torch.isfinite(xt).all() or (y is not None and not np.isfinite(y).all()):
            raise UserError(f"activation store {store.path} has non-finite values in its eval split (rows {a}..)")
        xt = (xt * sx).to(device)
        yield xt, ((torch.from_numpy(y) * sy).to(device) if y is not None else xt)


def data_sample(store: ActivationStore, rows: int, *, normalize: bool = True) -> torch.Tensor:
    """A fixed, evenly strided sample of the train split's inputs (for data-dependent init)."""
    lo, hi = store.train_range
    rows = min(rows, hi - lo)
    idx = np.linspace(lo, hi - 1, rows).astype(np.int64)
    return torch.from_numpy(_gather(store, idx)) * (store.meta.norm_scale if normalize else 1.0)


def _gather(store: ActivationStore, idx: np.ndarray) -> np.ndarray:
    out = []
    chunk = 1 << 16
    for a in range(int(idx[0]), int(idx[-1]) + 1, chunk):
        sel = idx[(idx >= a) & (idx < a + chunk)]
        if len(sel):
            x, _ = store.read(a, min(int(idx[-1]) + 1, a + chunk))
            out.append(x[sel - a])
    return np.concatenate(out)
