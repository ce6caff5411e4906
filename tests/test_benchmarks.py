"""Smoke tests of the benchmark harness at toy sizes: every measurement runs and its ratios are consistent.

These check the arithmetic of the ratios, not the speeds (speeds are never asserted in tests)."""

from __future__ import annotations

import pytest

from benchmarks.loader import loader_throughput
from benchmarks.peak import matmul_peak
from benchmarks.stacking import stacking_speedup
from benchmarks.trainer import measure_pack, trainer_efficiency
from sae_core.flops import flops_per_token


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAESCALE_CACHE", str(tmp_path))


def test_peak_is_positive_and_names_the_size() -> None:
    p = matmul_peak(sizes=(64, 128), seconds=0.01)
    assert p["flops_per_s"] > 0 and p["size"] in (64, 128) and p["dtype"] == "float32"


def test_measure_pack_counts_flops_of_every_run() -> None:
    row = measure_pack(16, 32, 64, 3, 4)
    expected = 3 * flops_per_token(16, 32) * 64 * 4 / row["train_wall_s"]
    assert row["flops_per_s"] == pytest.approx(expected)
    assert row["tokens_per_s"] == pytest.approx(3 * 64 * 4 / row["train_wall_s"])


def test_trainer_fractions_use_the_row_peak() -> None:
    rows = trainer_efficiency([(16, 32)], 1e9, batch_size=64, seconds=0.01, repeats=2)
    (row,) = rows
    assert row["repeats"] == 2 and row["steps"] >= 6
    assert row["fraction_of_peak"] == pytest.approx(row["flops_per_s"] / row["peak_flops_per_s"])


def test_stacking_rows_are_consistent() -> None:
    rows = stacking_speedup(16, 32, 64, [1, 2], 1e9, seconds=0.01, repeats=1)
    assert [r["K"] for r in rows] == [1, 2]
    for r in rows:
        assert r["speedup"] == pytest.approx(r["sequential_wall_s"] / r["stacked_wall_s"])
        assert r["stacked_fraction_of_peak"] == pytest.approx(r["sequential_fraction_of_peak"] * r["speedup"])


def test_loader_measures_both_modes() -> None:
    rows = loader_throughput(16, 32, 64, steps=5)
    assert [r["mode"] for r in rows] == ["single window", "windowed"]
    assert all(r["loader_rows_per_s"] > 0 for r in rows)
