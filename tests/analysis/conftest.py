"""Fixtures for the analysis tests: synthetic results directories and the external anchor data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analysis.synthetic import synthetic_table, write_results_dir

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SAESCALE_SHARED", REPO / ".." / "shared"))   # the published anchor data sets
CHINCHILLA = SHARED / "chinchilla" / "svg_extracted_data.csv"
STEPLAW_DENSE = SHARED / "steplaw" / "dense_lr_bs_loss.csv"


@pytest.fixture(scope="session")
def grid_dir(tmp_path_factory) -> Path:
    """A grid sweep (6 m x 6 steps x 5 LRs, 2 seeds, 1% noise) with 3 failed runs."""
    table = synthetic_table(noise=0.01, seeds=(0, 1), n_failed=3, seed=7)
    return write_results_dir(table, tmp_path_factory.mktemp("results") / "grid")


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory) -> Path:
    """A small grid sweep (4 m x 4 steps x 3 LRs, 1% noise) for CLI and notebook runs."""
    table = synthetic_table(
        m_values=(128, 256, 512, 1024), steps_values=(1024, 2048, 4096, 8192),
        lr_multipliers=(0.5, 1.0, 2.0), noise=0.01, n_failed=1, seed=11,
    )
    return write_results_dir(table, tmp_path_factory.mktemp("results") / "small")


@pytest.fixture(scope="session")
def grid_fit(grid_dir):
    """The fit of grid_dir (200 bootstraps), shared by the tests that only read it."""
    from analysis.fitfile import fit_results

    return fit_results(grid_dir, n_boot=200, seed=0)


@pytest.fixture(scope="session")
def chinchilla() -> Path:
    """Epoch AI's Chinchilla extraction, or skip."""
    if not CHINCHILLA.is_file():
        pytest.skip(f"{CHINCHILLA} is absent")
    return CHINCHILLA


@pytest.fixture(scope="session")
def steplaw_dense() -> Path:
    """Step Law's dense run table, or skip."""
    if not STEPLAW_DENSE.is_file():
        pytest.skip(f"{STEPLAW_DENSE} is absent")
    return STEPLAW_DENSE
