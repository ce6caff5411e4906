"""No code runs from a checkpoint, a directory that only holds checkpoints is not adopted, the
embedded Ray listens on loopback only, and the cluster YAMLs turn on Ray token authentication."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sae_core.errors import UserError
from sweeps import run_sweep
from tests.reliability.conftest import assert_each_run_once, write_spec

CLUSTER = Path(__file__).parents[2] / "cluster"


class _Payload:
    """Unpickling this runs a shell command (the attack of issue 12)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_planted_checkpoint_never_runs(tmp_path: Path, tiny_spec, local_ray) -> None:
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec(name="plant", design={"kind": "grid", "features": [32],
                                                                               "steps": [20]}, lr=[1e-3]))
    results = tmp_path / "results"
    run_sweep(spec, results, progress=False)
    run_file = next((results / "runs").glob("*.parquet"))
    run_file.unlink()   # the run is pending again; a planted checkpoint waits for it
    marker = tmp_path / "pwned"
    (results / "checkpoints").mkdir(exist_ok=True)
    torch.save({"format": 1, "identity": _Payload(marker), "step": 10}, results / "checkpoints" / f"{run_file.stem}.pt")

    summary = run_sweep(spec, results, progress=False)
    assert not marker.exists()
    assert summary.trained == 1
    df = assert_each_run_once(results, 1)
    assert (df["resumed_from_step"] == 0).all()   # retrained from scratch, the planted file ignored


def test_directory_with_only_checkpoints_is_refused(tmp_path: Path, tiny_spec) -> None:
    results = tmp_path / "results"
    (results / "checkpoints").mkdir(parents=True)
    (results / "checkpoints" / "abc.pt").write_bytes(b"anything")
    with pytest.raises(UserError, match=r"no manifest\.json .*checkpoints/"):
        run_sweep(tiny_spec(), results, progress=False)
    assert sorted(p.name for p in results.iterdir()) == [".lock", "checkpoints"]


LISTENERS = r"""
import os, psutil
from sweeps.executor import ray_session
import ray
with ray_session(None):
    ray.get(ray.remote(lambda: 1).remote())   # a worker process is up too
    me = psutil.Process()
    procs = [me] + me.children(recursive=True)
    names = set()
    for p in procs:
        for c in p.net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN:
                names.add(p.name())
                print("LISTEN", p.name(), c.laddr.ip, c.laddr.port)
    print("PROCS", len(procs))
"""


def test_embedded_ray_listens_on_loopback_only(tmp_path: Path, ray_tmp: str) -> None:
    env = {**os.environ, "RAY_TMPDIR": os.path.join(ray_tmp, "bind")}
    os.makedirs(env["RAY_TMPDIR"], exist_ok=True)
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-c", LISTENERS], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    listening = [line.split() for line in out.stdout.splitlines() if line.startswith("LISTEN")]
    names = {row[1] for row in listening}
    assert {"gcs_server", "raylet"} <= names, out.stdout   # the sockets were found at all
    addresses = {row[2] for row in listening}
    assert addresses <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, out.stdout


@pytest.mark.parametrize("name", ["sweep.yaml", "onprem.yaml"])
def test_cluster_yaml_enables_token_auth(name: str) -> None:
    cfg = yaml.safe_load((CLUSTER / name).read_text())
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cfg[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), cfg[key]
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("RAY_AUTH_MODE=token" in c and ".bashrc" in c for c in cfg["setup_commands"])  # the driver's shell
