"""Multi-node on one machine (ray.cluster_utils.Cluster: head without CPUs + 2 workers): a worker
node dies mid-sweep and every run still ends exactly once, ok; then cluster/run_sweep.py, the
script `ray submit` uploads, finds the same cluster with address "auto"."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import ray
import yaml
from ray.cluster_utils import Cluster

from sweeps import run_sweep

FAST_HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                      "health_check_timeout_ms": 1000}


def test_worker_node_killed_mid_sweep(tmp_path: Path, tiny_spec, ray_tmp: str, monkeypatch) -> None:
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)  # the cluster's files (and ray_current_cluster) stay in here
    if ray.is_initialized():
        ray.shutdown()  # the shared local instance; the next test that needs it restarts it
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "_system_config": FAST_HEALTH_CHECKS})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        results = tmp_path / "r"
        # 8 packs of one run each, ~1-2 s apiece: both nodes are busy when one is killed.
        spec = tiny_spec(design={"kind": "grid", "features": [64], "steps": [300, 310, 320, 330]},
                         lr=[1e-3, 3e-3], packing={"max_runs": 1}, retries=2, checkpoint_every=50)
        outcome: dict = {}
        driver = threading.Thread(target=lambda: outcome.update(summary=run_sweep(spec, results, progress=False)))
        driver.start()
        deadline = time.monotonic() + 120
        while not list((results / "runs").glob("*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert driver.is_alive(), "the sweep ended before a node could be killed"
        killed = time.time()
        cluster.remove_node(workers[0], allow_graceful=False)
        driver.join(timeout=240)
        assert not driver.is_alive()
        summary = outcome["summary"]
        table = pd.read_parquet(results / "results.parquet")
        assert len(table) == 8 and table["run_id"].is_unique and (table["status"] == "ok").all()
        assert summary.ok == 8 and summary.trained == 8
        assert len(list((results / "runs").glob("*.parquet"))) == 8
        on_dead = table[table["ray_node_id"] == workers[0].node_id]
        assert (pd.to_datetime(on_dead["finished_at"]).astype("int64") / 1e9 < killed).all()
        assert (table["ray_node_id"] == workers[1].node_id).sum() >= 8 - len(on_dead)

        spec_path = tmp_path / "submitted.yaml"
        spec_path.write_text(yaml.safe_dump(tiny_spec(name="submitted")))
        script = Path(__file__).parents[2] / "cluster" / "run_sweep.py"
        proc = subprocess.run([sys.executable, str(script), str(spec_path), "--results", str(tmp_path / "sub"),
                               "--no-progress"], capture_output=True, text=True, timeout=180,
                              env={**os.environ, "RAY_ADDRESS": ""}, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "sweep submitted: 8/8 runs (8 ok" in proc.stdout
        sub = pd.read_parquet(tmp_path / "sub" / "results.parquet")
        assert (sub["ray_node_id"] == workers[1].node_id).all()  # ran on the cluster's surviving worker
    finally:
        ray.shutdown()
        cluster.shutdown()
