"""Runs inside the SAELens peer venv (benchmarks/.peer/saelens): trains SAELens's standard SAE on a
saescale store's batch stream and prints one JSON line {peer_wall_s, peer_eval_loss, peer_version}.

Invoked by benchmarks.peer_saelens with the repository root on PYTHONPATH, so the batches come
from saescale's own BatchStream (same order and normalisation as saescale's trainer); only
sae_core.store / sae_core.loader (numpy + torch) are imported from saescale.
Usage: python peer_saelens_worker.py '{"store": ..., "n": ..., "m": ..., "batch_size": ..., "steps": ...,
"lr": ..., "lam": ..., "threads": ..., "eval_max_rows": ..., "seed": ...}'
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Iterator

import torch


def _batches(stream: Any, steps: int) -> Iterator[torch.Tensor]:
    for step in range(steps):
        yield stream.batch(step)[0]


def main(args: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate SAELens's StandardTrainingSAE with the April-2024 settings closest to saescale's."""
    import sae_lens
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    from sae_core.loader import BatchStream, eval_batches
    from sae_core.store import ActivationStore

    torch.set_num_threads(int(args["threads"]))
    torch.manual_seed(int(args["seed"]))
    steps, batch = int(args["steps"]), int(args["batch_size"])
    lr, lam = float(args["lr"]), float(args["lam"])
    store = ActivationStore(args["store"])
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(
        d_in=int(args["n"]), d_sae=int(args["m"]), l1_coefficient=lam, lp_norm=1.0,
        l1_warm_up_steps=max(1, round(0.05 * steps)), decoder_init_norm=0.1,
        apply_b_dec_to_input=False, normalize_activations="none"))   # the batches are already normalised
    cfg = SAETrainerConfig(
        total_training_samples=steps * batch, train_batch_size_samples=batch, lr=lr, lr_end=lr,
        lr_scheduler_name="constant", lr_warm_up_steps=0, lr_decay_steps=round(0.2 * steps),
        adam_beta1=0.9, adam_beta2=0.999, device="cpu")
    stream = BatchStream(store, batch, data_seed=0)
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=_batches(stream, steps))
    t0 = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - t0
    stream.close()
    with torch.no_grad():   # saescale's eval loss: sum ||x - x_hat||^2 + lam sum_i f_i ||W_dec,i||, per row
        total, count = 0.0, 0
        dec_norm = sae.W_dec.norm(dim=1)
        for x, _ in eval_batches(store, max_rows=int(args["eval_max_rows"])):
            f = sae.encode(x)
            x_hat = sae.decode(f)
            total += float(((x - x_hat).pow(2).sum(-1) + lam * (f * dec_norm).sum(-1)).sum())
            count += x.shape[0]
    return {"peer_wall_s": wall, "peer_eval_loss": total / count, "peer_version": f"sae-lens {sae_lens.__version__}"}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
