"""Shared fixtures for the sweep tests: tiny specs and one local Ray instance for the session."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from typing import Any, Callable, Iterator

import pytest

# Tiny synthetic data: generated once per session into the suite's cache dir (tests/conftest.py).
TINY_DATA = {"source": "synthetic", "n": 16, "true_features": 64, "tokens": 20000, "seed": 0}
TINY_SPEC: dict[str, Any] = {
    "name": "tiny",
    "activations": TINY_DATA,
    "recipe": "anthropic-2024-04",
    "batch_size": 256,
    "design": {"kind": "grid", "features": [32, 64], "steps": [20, 40]},
    "lr": [1.0e-3, 3.0e-3],
    "lambda": [1.0],
    "seeds": [0],
    "resources": {"cpus": 1, "gpus": 0},
    "retries": 1,
}


@pytest.fixture
def tiny_spec() -> Callable[..., dict[str, Any]]:
    """A factory: the tiny grid spec with top-level fields replaced."""

    def make(**overrides: Any) -> dict[str, Any]:
        spec = copy.deepcopy(TINY_SPEC)
        spec.update(copy.deepcopy(overrides))
        return spec

    return make


@pytest.fixture(scope="session")
def ray_tmp() -> Iterator[str]:
    """A short temp dir for Ray (its unix sockets must stay under ~107 characters)."""
    path = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def _ray_session(ray_tmp: str) -> Iterator[None]:
    import ray

    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def local_ray(ray_tmp: str, _ray_session: None) -> Iterator[None]:
    """One embedded local Ray (2 CPUs, no dashboard) shared by the tests; started on first use.

    A test that needs another cluster shuts it down; the next test using this starts it again.
    """
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=os.path.join(ray_tmp, "local"),
                 logging_level="WARNING")
    yield
