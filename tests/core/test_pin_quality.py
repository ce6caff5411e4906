"""Cheap quality pins: each Anthropic recipe recovers the planted features of a small synthetic problem.

About 5 s per recipe on one core: 1000 steps at batch 256 on the 64-feature problem below.
"""

import math

import pytest

from sae_core.config import RunConfig
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.train import train

SMALL = SyntheticConfig(n=32, m_true=64, tokens=100_000, mean_active=3.0, zipf_exponent=0.5)
KEYS = ("loss", "mse", "nmse", "fvu", "l0", "l1", "dead_frac", "dead_window_tokens", "dense_frac", "shrinkage",
        "l2_ratio", "mmcs", "recovered_frac", "flops", "flops_convention", "store_hash")


@pytest.fixture(scope="module")
def small_store(cache_dir):
    return synthetic_store(SMALL, cache_dir)


def test_relu_recipe_recovers_planted_features(small_store):
    r = train(RunConfig("anthropic-2024-04", m=128, steps=1000, batch_size=256, lr=3e-3, lam=1.0), small_store)
    assert r.status == "ok"
    assert r.metrics["mmcs"] >= 0.9, r.metrics
    assert r.metrics["recovered_frac"] >= 0.9
    assert r.metrics["dead_frac"] < 0.1
    assert 0 < r.metrics["nmse"] < 0.2


def test_jumprelu_recipe_recovers_planted_features(small_store):
    r = train(RunConfig("anthropic-2025-02", m=128, steps=1000, batch_size=256, lr=2e-3, lam=1.0), small_store)
    row = r.row()
    for key in KEYS:
        assert key in row and row[key] is not None, key
    assert r.status == "ok" and math.isfinite(row["loss"]) and row["loss"] > row["mse"]
    assert r.metrics["mmcs"] >= 0.95, r.metrics
    assert r.metrics["recovered_frac"] >= 0.9
    assert r.metrics["dead_frac"] < 0.1
    assert 0 < r.metrics["nmse"] < 0.3
    assert 1.0 < r.metrics["l0"] < 4.0                      # about the 3 planted features per row
    assert row["dead_window_tokens"] == 1000 * 256
    assert row["flops"] == 10 * 32 * 128 * 256 * 1000
