"""SAELens as a peer: its StandardTrainingSAE with the April-2024 settings closest to saescale's.

SAELens is installed only for this benchmark, into its own venv benchmarks/.peer/saelens
(torch==2.13.0 first, so sae-lens cannot pull another torch build), and runs in a subprocess
with that venv's python (benchmarks/peer_saelens_worker.py). Same data on both sides: the worker
reads the same store through saescale's BatchStream (same batches, same normalisation to
E||x|| = sqrt(n)).
Matched: ReLU SAE, loss sum_d (x - x_hat)^2 + lambda sum_i f_i ||W_d,i|| (batch mean), W_e = W_d^T
at init with decoder rows of norm 0.1, zero biases, no b_dec subtraction from the input, Adam
(0.9, 0.999, eps 1e-8), LR constant then linear decay to 0 over the last 20%, lambda warm-up
over the first 5%, gradient clipping at norm 1, fp32, same lr, lambda, threads and steps.
Differences: SAELens draws decoder directions Kaiming-uniform (ours Gaussian), so the seeds give
different initial weights; its lambda warm-up reaches the final value one step later; it keeps
per-feature firing statistics every step (its dead-feature bookkeeping); ours uses a fused
forward/backward for this recipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks import PeerNotInstalled
from sae_core.store import ActivationStore

SAELENS_SPEC = "sae-lens==6.54.12"
TORCH_SPEC = "torch==2.13.0"
ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = Path(__file__).resolve().parent / ".peer" / "saelens"
WORKER = Path(__file__).resolve().parent / "peer_saelens_worker.py"


def ensure_saelens(install: bool) -> Path:
    """The peer venv's python; creates the venv and installs torch then sae-lens there if asked."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    if not stamp.exists():
        if not install:
            raise PeerNotInstalled(f"peer not installed; rerun with --install-peer (creates {PEER_VENV} with "
                               f"{TORCH_SPEC} and {SAELENS_SPEC})")
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        for spec in (TORCH_SPEC, SAELENS_SPEC):     # torch first: sae-lens must not pull another torch build
            subprocess.run([str(python), "-m", "pip", "install", "-q", spec], check=True)
        stamp.write_text(f"{TORCH_SPEC}\n{SAELENS_SPEC}\n")
    return python


def run_saelens(python: Path, store: ActivationStore, n: int, m: int, batch_size: int, steps: int, *,
                lr: float, lam: float, eval_max_rows: int) -> dict[str, Any]:
    """Train the peer in its venv on `store`; {peer_wall_s, peer_eval_loss, peer_version}."""
    args = {"store": str(store.path), "n": n, "m": m, "batch_size": batch_size, "steps": steps, "lr": lr,
            "lam": lam, "threads": torch.get_num_threads(), "eval_max_rows": eval_max_rows, "seed": 0}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([str(python), str(WORKER), json.dumps(args)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"SAELens peer failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
