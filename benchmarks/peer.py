"""Peers at equal shapes, steps and data, against saescale's trainer on the April-2024 ReLU recipe.

Two peers (PEERS): SAELens's standard SAE (benchmarks.peer_saelens, its own venv and process),
and dictionary-learning's StandardTrainerAprilUpdate, described here.

The peer is installed only for this benchmark, `--no-deps` into benchmarks/.peer (it declares
nnsight, wandb, datasets... that the trainer module does not use). Its package __init__ imports
nnsight, so the trainer module is loaded from the installed files without running that __init__.
Both sides: same data stream order, Adam(0.9, 0.999), LR decay over the last 20%, lambda warm-up
over the first 5%, grad clip 1, same lr and lambda, fp32; the peer's LR warm-up is set to 1 step
(our recipe has none). Quality is compared as the recipe's loss at final lambda on the same
held-out rows (the peer's own training loss weights the penalty by ||W_d,i||^2, see its source).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

import torch

from sae_core.config import RunConfig
from sae_core.flops import flops_per_token
from sae_core.train import TrainOptions, train
from sae_core.loader import BatchStream, eval_batches

from sae_core.store import ActivationStore

from benchmarks import PeerNotInstalled
from benchmarks.data import bench_store
from benchmarks.peer_saelens import ensure_saelens, run_saelens

PEER = "dictionary-learning==0.1.0"
PEER_DIR = Path(__file__).resolve().parent / ".peer"


def ensure_peer(install: bool) -> Path:
    """The directory holding the peer package; installs it there (pip, --no-deps) if asked."""
    if not (PEER_DIR / "dictionary_learning").exists():
        if not install:
            raise PeerNotInstalled(f"peer not installed; rerun with --install-peer (pip installs {PEER} into {PEER_DIR})")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(PEER_DIR),
                        PEER, "einops"], check=True)
    return PEER_DIR


def load_peer_trainer(peer_dir: Path) -> tuple[Any, Any]:
    """(StandardTrainerAprilUpdate, AutoEncoderNew) without executing the package's __init__ (nnsight)."""
    if str(peer_dir) not in sys.path:
        sys.path.insert(0, str(peer_dir))
    for name in ("dictionary_learning", "dictionary_learning.trainers"):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(peer_dir.joinpath(*name.split(".")))]
            sys.modules[name] = pkg
    standard = importlib.import_module("dictionary_learning.trainers.standard")
    dictionary = importlib.import_module("dictionary_learning.dictionary")
    return standard.StandardTrainerAprilUpdate, dictionary.AutoEncoderNew


def run_dictionary_learning(peer_dir: Path, store: ActivationStore, n: int, m: int, batch_size: int, steps: int, *,
                            lr: float, lam: float, eval_max_rows: int) -> dict[str, Any]:
    """Train dictionary-learning's April-update trainer on `store`; {peer_wall_s, peer_eval_loss, peer_version}."""
    Trainer, AutoEncoderNew = load_peer_trainer(peer_dir)
    stream = BatchStream(store, batch_size, data_seed=0)
    peer = Trainer(steps=steps, activation_dim=n, dict_size=m, layer=0, lm_name="bench", dict_class=AutoEncoderNew,
                   lr=lr, l1_penalty=lam, warmup_steps=1, sparsity_warmup_steps=max(1, round(0.05 * steps)),
                   decay_start=round(0.8 * steps), seed=0, device="cpu", wandb_name=None)
    t0 = time.perf_counter()
    for step in range(steps):
        peer.update(step, stream.batch(step)[0])
    peer_wall = time.perf_counter() - t0
    stream.close()
    with torch.no_grad():   # the recipe's loss at final lambda on the same held-out rows as ours
        total, count = 0.0, 0
        for x, _ in eval_batches(store, max_rows=eval_max_rows):
            x_hat, f_scaled = peer.ae(x, output_features=True)   # f already multiplied by ||W_d,i||
            total += float(((x - x_hat).pow(2).sum(-1) + lam * f_scaled.sum(-1)).sum())
            count += x.shape[0]
    return {"peer_wall_s": peer_wall, "peer_eval_loss": total / count, "peer_version": PEER}


# peer name -> (prepare: install flag -> handle, run: handle, store, n, m, batch, steps, ... -> peer columns)
PEERS: dict[str, tuple[Callable[[bool], Any], Callable[..., dict[str, Any]]]] = {
    "dictionary-learning": (ensure_peer, run_dictionary_learning),
    "saelens": (ensure_saelens, run_saelens),
}


def peer_comparison(n: int, m: int, batch_size: int, steps: int, *, peer: str = "dictionary-learning",
                    lr: float = 1e-3, lam: float = 1.0, install: bool = False, eval_max_rows: int = 2048) -> dict[str, Any]:
    """Train the same run with saescale and with `peer`; report their wall times, ratio and eval losses."""
    prepare, run_peer = PEERS[peer]
    handle = prepare(install)          # before any training: a missing peer fails fast
    store = bench_store(n, batch_size)
    ours = train(RunConfig("anthropic-2024-04", m=m, steps=steps, batch_size=batch_size, lr=lr, lam=lam), store,
                 TrainOptions(eval_max_rows=eval_max_rows))
    theirs = run_peer(handle, store, n, m, batch_size, steps, lr=lr, lam=lam, eval_max_rows=eval_max_rows)
    ours_wall, peer_wall = ours.info["train_wall_s"], theirs["peer_wall_s"]
    flops = flops_per_token(n, m) * batch_size * steps
    return {"peer": peer, "n": n, "m": m, "batch_size": batch_size, "steps": steps,
            "ours_wall_s": ours_wall, "peer_wall_s": peer_wall, "speedup_vs_peer": peer_wall / ours_wall,
            "ours_flops_per_s": flops / ours_wall, "peer_flops_per_s": flops / peer_wall,
            "ours_eval_loss": ours.metrics["loss"], "peer_eval_loss": theirs["peer_eval_loss"],
            "peer_version": theirs["peer_version"]}
