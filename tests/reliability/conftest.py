"""Fault-injection helpers: the CLI in a subprocess or in-process, and what a clean results dir looks like."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from sae_core.files import is_temp_name
from tests.sweeps.conftest import _ray_session, local_ray, ray_tmp, tiny_spec  # noqa: F401 (fixtures)


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def temp_files(root: Path) -> list[Path]:
    """Our temp files anywhere below root (must be none after any ending)."""
    return [p for p in root.rglob("*") if is_temp_name(p.name)] if root.exists() else []


def table(results: Path) -> pd.DataFrame:
    return pd.read_parquet(results / "results.parquet")


def assert_each_run_once(results: Path, runs: int, status: str = "ok") -> pd.DataFrame:
    """results.parquet and runs/ agree: `runs` rows, each run_id once, all with `status`; no temp files."""
    df = table(results)
    assert len(df) == runs and df["run_id"].is_unique, df[["run_id", "status"]]
    assert (df["status"] == status).all(), df[["run_id", "status", "error"]]
    assert sorted(p.stem for p in (results / "runs").glob("*.parquet")) == sorted(df["run_id"])
    assert temp_files(results) == []
    return df


def cli(*args: str) -> int:
    """`saescale ARGS` in-process; its exit code (read its output with the caller's capsys)."""
    from saescale.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0)


def spawn(args: list[str], ray_tmp: str, name: str) -> subprocess.Popen:
    """`python -m saescale ARGS` as its own session, Ray's files under a short temp dir."""
    env = {**os.environ, "RAY_TMPDIR": os.path.join(ray_tmp, name)}
    os.makedirs(env["RAY_TMPDIR"], exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "saescale", *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
