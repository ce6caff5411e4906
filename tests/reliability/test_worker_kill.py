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
    """Find the worker training the pack, then SIGKILL it as soon as its first checkpoint is on disk."""
    worker = None
    while time.monotonic() < deadline and worker is None:
        worker = next((p for p in psutil.process_iter(["cmdline"])
                       if any("sae-pack-" in part for part in p.info["cmdline"] or [])), None)
        time.sleep(0.02)
    while time.monotonic() < deadline and worker is not None:
        if checkpoints.is_dir() and any(checkpoints.glob("*.pt")):
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)
            return
        time.sleep(0.005)


def test_worker_killed_mid_pack_resumes(tmp_path: Path, tiny_spec, local_ray) -> None:
    # One run per pack: a pack resumes only when all its runs have checkpoints at one step, and a
    # kill between two runs' checkpoint writes would (rightly) restart it from step 0.
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec(
        name="wkill", design={"kind": "grid", "features": [64], "steps": [3000]}, lr=[1e-3],
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
    assert summary.trained == 1 and summary.failed == 0
    df = assert_each_run_once(results, 1)
    assert (df["resumed_from_step"] > 0).all()   # the retried pack picked up its checkpoint
