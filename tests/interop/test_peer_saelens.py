"""The SAELens peer trains the recipe saescale trains: at equal shapes, steps and data its held-out
loss lands within a few percent of ours (different initial draws only). Needs sae_lens (make interop)."""

from __future__ import annotations

import pytest
import torch

from sae_core.config import RunConfig
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.train import TrainOptions, train

pytestmark = pytest.mark.interop
pytest.importorskip("sae_lens")

from benchmarks.peer_saelens_worker import main as saelens_peer  # noqa: E402  (imports sae_lens lazily, needs it)


def test_saelens_peer_reaches_our_eval_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    store = synthetic_store(SyntheticConfig(n=16, m_true=64, tokens=40_000, seed=1), tmp_path)
    steps, batch, lr, lam = 200, 256, 1e-3, 1.0
    ours = train(RunConfig("anthropic-2024-04", m=64, steps=steps, batch_size=batch, lr=lr, lam=lam), store,
                 TrainOptions(eval_max_rows=2048))
    peer = saelens_peer({"store": str(store.path), "n": 16, "m": 64, "batch_size": batch, "steps": steps, "lr": lr,
                         "lam": lam, "threads": torch.get_num_threads(), "eval_max_rows": 2048, "seed": 0})
    assert peer["peer_version"].startswith("sae-lens 6.")
    start = train(RunConfig("anthropic-2024-04", m=64, steps=1, batch_size=batch, lr=lr, lam=lam), store,
                  TrainOptions(eval_max_rows=2048)).metrics["loss"]
    assert ours.metrics["loss"] < 0.8 * start                  # both trained: the comparison is not at init
    assert abs(peer["peer_eval_loss"] - ours.metrics["loss"]) < 0.05 * ours.metrics["loss"]
