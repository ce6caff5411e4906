"""Data path: rows/s the batch stream delivers, against the tokens/s training consumes at a shape.

Both shuffle modes are measured: the whole train split in one window (loaded once, then
permuted per epoch) and windowed shuffling (blocks loaded window by window, prefetched on a
thread), forced here with a small window. Window loads are counted in the loader's time.
"""

from __future__ import annotations

import time
from typing import Any

from sae_core.loader import BLOCK_ROWS, BatchStream

from benchmarks.data import bench_store
from benchmarks.trainer import measure_pack


def loader_throughput(n: int, m: int, batch_size: int, steps: int = 200) -> list[dict[str, Any]]:
    """Rows/s of BatchStream in both modes, and training tokens/s of a single run at (n, m)."""
    store = bench_store(n, batch_size)
    train_tps = measure_pack(n, m, batch_size, 1, 20)["tokens_per_s"]
    rows = []
    for mode, window in (("single window", None), ("windowed", BLOCK_ROWS)):
        stream = BatchStream(store, batch_size, data_seed=0, window_rows=window)
        t0 = time.perf_counter()
        for step in range(steps):
            stream.batch(step)
        elapsed = time.perf_counter() - t0
        stream.close()
        rows.append({"n": n, "m": m, "batch_size": batch_size, "mode": mode, "steps": steps,
                     "loader_rows_per_s": steps * batch_size / elapsed, "train_tokens_per_s": train_tps,
                     "loader_over_training": steps * batch_size / elapsed / train_tps})
    return rows
