"""Synthetic stores sized for benchmarking a shape (enough rows for the batches, little more)."""

from __future__ import annotations

import os
from pathlib import Path

from sae_core.store import ActivationStore
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.runtime import default_cache_dir


def bench_store(n: int, batch_size: int, cache_dir: str | os.PathLike[str] | None = None) -> ActivationStore:
    """A synthetic store with n dims and at least 8 batches of training rows."""
    tokens = max(65_536, 8 * batch_size) + 4096
    cfg = SyntheticConfig(n=n, m_true=max(256, 4 * n), tokens=tokens, seed=123)
    root = Path(cache_dir or default_cache_dir()) / "bench"
    return synthetic_store(cfg, root)
