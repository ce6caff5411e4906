"""Small shared builders for sae_core tests."""

from __future__ import annotations

import numpy as np

from sae_core.store import StoreWriter


def write_store(path, x: np.ndarray, y: np.ndarray | None = None, *, shard_rows: int = 4096, eval_rows: int | None = None):
    """An ActivationStore holding rows x (and targets y)."""
    w = StoreWriter(path, x.shape[1], None if y is None else y.shape[1], shard_rows=shard_rows,
                    source={"kind": "test"}, has_targets=y is not None)
    w.append(x, y)
    return w.close(eval_rows=eval_rows)
