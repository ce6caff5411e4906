"""A Ray worker is SIGKILLed mid-pack: Ray retries the pack, which resumes from its checkpoint; every
run ends ok exactly once and no temp file is left."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil

from sweeps import run_sweep
from tests.reliability.conftest import assert_each_run_once, write_spec


def _kill_worker_after_checkpoint(checkpoints: Path, killed: list[int], deadline: float) -> None:
    """Wait for a pack's first checkpoint, then SIGKILL the worker process training it."""
    while time.monotonic() < deadline and not killed:
        if checkpoints.is_dir() and any(checkpoints.glob("*.pt")):
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if any("sae-pack-" in part for part in proc.info["cmdline"] or []):
                    os.kill(proc.info["pid"], signal.SIGKILL)
                    killed.append(proc.info["pid"])
                    return
        time.sleep(0.02)


def test_worker_killed_mid_pack_resumes(tmp_path: Path, tiny_spec, local_ray) -> None:
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec(
        name="wkill", design={"kind": "grid", "features": [64], "steps": [800]}, lr=[1e-3, 3e-3],
        checkpoint_every=20, retries=1))
    results = tmp_path / "results"
    killed: list[int] = []
    killer = threading.Thread(target=_kill_worker_after_checkpoint,
                              args=(results / "checkpoints", killed, time.monotonic() + 120))
    killer.start()
    try:
        summary = run_sweep(spec, results, progress=False)
    finally:
        killer.join()
    assert killed, "no pack worker was found to kill"
    assert summary.trained == 2 and summary.failed == 0
    df = assert_each_run_once(results, 2)
    assert (df["resumed_from_step"] > 0).all()   # the retried pack picked up the checkpoints
