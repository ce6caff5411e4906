"""SIGTERM / SIGINT to the driver: one line, exit 143 / 130, the manifest records the interrupted
invocation, no temp file and no Ray native dump; the same command then finishes every run once."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from saescale.signals import INTERRUPTED_LINE
from sweeps import run_sweep
from tests.reliability.conftest import assert_each_run_once, spawn, temp_files, write_spec


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143),
                                             pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
def test_signal_ends_cleanly_and_rerun_resumes(tmp_path: Path, tiny_spec, ray_tmp: str, local_ray,
                                               signum: int, code: int) -> None:
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec(
        name="sig", design={"kind": "grid", "features": [64], "steps": [2000, 2010]}, lr=[1e-3],
        packing={"max_runs": 1}, checkpoint_every=20))
    results = tmp_path / "results"
    driver = spawn(["sweep", "run", str(spec), "--results", str(results), "--no-progress"], ray_tmp, f"sig{signum}")
    deadline = time.monotonic() + 120
    while not list((results / "checkpoints").glob("*.pt")) if (results / "checkpoints").is_dir() else True:
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline, "no pack started in time"
        time.sleep(0.01)
    driver.send_signal(signum)
    out, err = driver.communicate(timeout=60)

    assert driver.returncode == code, err
    assert err.strip().splitlines()[-1] == INTERRUPTED_LINE and err.count(INTERRUPTED_LINE) == 1, err
    for noise in ("Traceback", "SIGTERM received", "*** ", "KeyboardInterrupt"):
        assert noise not in err + out, err
    last = json.loads((results / "manifest.json").read_text())["last_invocation"]
    assert last["ended"] == "Interrupted" and signal.Signals(signum).name in last["reason"]
    assert temp_files(results) == []
    assert not list((results / "runs").glob("*.parquet")) if (results / "runs").is_dir() else True

    summary = run_sweep(spec, results, progress=False)
    assert summary.trained == 2 and summary.failed == 0
    assert_each_run_once(results, 2)
