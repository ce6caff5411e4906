"""Sweep start-up: with TrainOptions.reuse_stream (what sweep tasks use) a process's next pack on the same
data reuses the loaded train split instead of reloading it, and trains exactly what a fresh stream trains."""

from __future__ import annotations

import numpy as np
import pytest

import sae_core.train as train_module
from sae_core.config import RunConfig
from sae_core.loader import BatchStream
from sae_core.train import TrainOptions, train_pack
from tests.core.helpers import write_store


@pytest.fixture
def store(tmp_path):
    x = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    return write_store(tmp_path / "store", x, eval_rows=500)


@pytest.fixture
def loads(monkeypatch):
    """Counts BatchStream._load calls (each reads, checks and scales a window of the train split)."""
    count = [0]
    original = BatchStream._load

    def counting(self, blocks):
        count[0] += 1
        return original(self, blocks)

    monkeypatch.setattr(BatchStream, "_load", counting)
    monkeypatch.setattr(train_module, "_KEPT_STREAM", {})
    return count


def _pack(store, reuse: bool, m: int = 16, lr: float = 1e-2):
    runs = [RunConfig("anthropic-2024-04", m=m, steps=12, batch_size=64, lr=lr, seed=s) for s in (0, 1)]
    return [r.metrics["loss"] for r in train_pack(runs, store, TrainOptions(reuse_stream=reuse, eval_max_rows=256))]


def test_second_pack_reuses_the_loaded_stream(store, loads) -> None:
    first = _pack(store, reuse=True)
    second = _pack(store, reuse=True, m=24)   # another shape, same data stream
    assert loads[0] == 1
    assert _pack(store, reuse=False) == first and _pack(store, reuse=False, m=24) == second   # same batches
    assert loads[0] == 3


def test_other_stream_settings_get_a_new_stream(store, loads) -> None:
    _pack(store, reuse=True)
    runs = [RunConfig("anthropic-2024-04", m=16, steps=12, batch_size=32, lr=1e-2, seed=0)]
    train_pack(runs, store, TrainOptions(reuse_stream=True, eval_max_rows=256))
    assert loads[0] == 2 and len(train_module._KEPT_STREAM) == 1   # one kept stream at a time


def test_without_reuse_nothing_is_kept(store, loads) -> None:
    _pack(store, reuse=False)
    _pack(store, reuse=False)
    assert loads[0] == 2 and train_module._KEPT_STREAM == {}
