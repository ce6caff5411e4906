"""The driver is SIGKILLed mid-sweep; the rerun completes with no duplicates, retrains nothing that
had finished, and resumes interrupted runs from their checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from sweeps import run_sweep


def test_sigkilled_driver_then_rerun(tmp_path: Path, tiny_spec, ray_tmp: str, local_ray) -> None:
    spec = tiny_spec(name="killme", design={"kind": "grid", "features": [64], "steps": [300, 310, 320, 330, 340, 350]},
                     lr=[1e-3, 3e-3], packing={"max_runs": 1}, checkpoint_every=50)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    results = tmp_path / "results"
    env = {**os.environ, "RAY_TMPDIR": os.path.join(ray_tmp, "driver")}
    os.makedirs(env["RAY_TMPDIR"], exist_ok=True)
    driver = subprocess.Popen([sys.executable, "-m", "saescale", "sweep", "run", str(path), "--results", str(results),
                               "--no-progress"], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while len(_rows(results)) < 2 or not _interrupted(results):
            assert driver.poll() is None, "the driver exited before it could be killed"
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        # The driver's embedded Ray goes down with it, but its workers notice only after a few seconds
        # and may finish (and clean up) the run in hand; end them now, as a crashed machine would.
        _kill_session(driver.pid)
    finished = _rows(results)
    interrupted = _interrupted(results)
    assert 2 <= len(finished) < 12 and interrupted

    summary = run_sweep(path, results, progress=False)
    table = pd.read_parquet(results / "results.parquet")
    assert len(table) == 12 and table["run_id"].is_unique and (table["status"] == "ok").all()
    assert summary.skipped == len(finished) and summary.trained == 12 - len(finished)
    assert {k: v for k, v in _rows(results).items() if k in finished} == finished  # not retrained or rewritten
    resumed = table.set_index("run_id").loc[sorted(interrupted), "resumed_from_step"]
    assert (resumed > 0).all()  # picked up from the checkpoints the killed run left


def _rows(results: Path) -> dict[str, int]:
    """run_id -> mtime of its row file."""
    return {f.stem: f.stat().st_mtime_ns for f in (results / "runs").glob("*.parquet")}


def _interrupted(results: Path) -> set[str]:
    """Runs with a checkpoint and no row: in flight, and resumable."""
    ckpts = {f.stem for f in (results / "checkpoints").glob("*.pt")} if (results / "checkpoints").is_dir() else set()
    return ckpts - set(_rows(results))


def _kill_session(sid: int) -> None:
    """SIGKILL every process of the session the test started (the driver and its Ray processes)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                os.kill(int(entry), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
