"""Downstream metrics: 1.0 for a perfect reconstruction, 0 for the ablation baselines, in between otherwise."""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from sae_core.lm.cache import cache_activations
from sae_core.lm.downstream import (CE_COLUMNS, EMBEDDING_COLUMNS, RESULT_COLUMNS, DownstreamEval,
                                     downstream_metrics, train_mean)
from sae_core.lm.hooks import splice
from sae_core.store import StoreWriter
from sae_core.errors import UserError


def identity(x):
    return x


def test_minilm_embedding_cosine_recovered(minilm, minilm_store):
    evaluate = DownstreamEval(minilm_store, model=minilm, windows=2)
    perfect = evaluate(identity)
    assert perfect["emb_cos_spliced"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["emb_cos_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["emb_cos_mean_abl"] < 0.9
    assert all(math.isnan(perfect[k]) for k in CE_COLUMNS)  # an encoder has no LM loss
    mean = torch.from_numpy(train_mean(minilm_store))
    ablated = evaluate(lambda x: mean.expand(x.shape[0], -1))
    assert ablated["emb_cos_recovered"] == pytest.approx(0.0, abs=1e-6)
    gen = torch.Generator().manual_seed(0)
    noisy = evaluate(lambda x: x + 0.5 * torch.randn(x.shape, generator=gen))
    assert 0.0 < noisy["emb_cos_recovered"] < 0.999
    # the one-shot function gives the same numbers as the reusable evaluator
    again = downstream_metrics(minilm_store, identity, model=minilm, windows=2)
    assert all(again[k] == perfect[k] for k in (*EMBEDDING_COLUMNS, "downstream_windows"))


@pytest.fixture(scope="module")
def gpt2_store(tiny_gpt2, corpus, tmp_path_factory):
    return cache_activations(tiny_gpt2, 1, "resid", [str(corpus)], 2000, tmp_path_factory.mktemp("g") / "s",
                             seq_len=64, progress=False)


def test_causal_ce_recovered(tiny_gpt2, gpt2_store):
    perfect = downstream_metrics(gpt2_store, identity, model=tiny_gpt2, windows=8)
    assert set(perfect) == set(RESULT_COLUMNS)
    assert all(math.isfinite(perfect[k]) for k in CE_COLUMNS)
    assert all(math.isnan(perfect[k]) for k in EMBEDDING_COLUMNS)  # not measured for a causal LM
    assert perfect["ce_spliced"] == perfect["ce_clean"]
    assert perfect["ce_zero_abl"] != perfect["ce_clean"] and perfect["ce_mean_abl"] != perfect["ce_clean"]
    assert perfect["ce_recovered_zero"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["ce_recovered_mean"] == pytest.approx(1.0, abs=1e-4)
    zero = downstream_metrics(gpt2_store, torch.zeros_like, model=tiny_gpt2, windows=8)
    assert zero["ce_recovered_zero"] == pytest.approx(0.0, abs=1e-6)
    mean = torch.from_numpy(train_mean(gpt2_store))
    ablated = downstream_metrics(gpt2_store, lambda x: mean.expand(x.shape[0], -1), model=tiny_gpt2, windows=8)
    assert ablated["ce_recovered_mean"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["downstream_windows"] == 8.0


def test_mlp_site_splices_the_mlp_output(tiny_gpt2, corpus, tmp_path):
    store = cache_activations(tiny_gpt2, 2, "mlp", [str(corpus)], 1500, tmp_path / "mlp", seq_len=64, progress=False)
    mlp = tiny_gpt2.blocks[1].mlp
    assert downstream_metrics(store, mlp, model=tiny_gpt2, windows=4)["ce_recovered_zero"] == pytest.approx(1.0, abs=1e-4)
    zero = downstream_metrics(store, lambda x: torch.zeros_like(x), model=tiny_gpt2, windows=4)
    assert zero["ce_recovered_zero"] == pytest.approx(0.0, abs=1e-6)


def test_splice_touches_only_the_kept_positions(tiny_gpt2):
    site = tiny_gpt2.site(1, "resid")
    ids = torch.arange(10, 26).reshape(2, 8)
    keep = torch.ones(2, 8, dtype=torch.bool)
    keep[:, 0] = False
    keep[1, 5] = False

    def block_output(spliced: bool) -> torch.Tensor:
        seen = {}
        with torch.inference_mode(), splice(site, keep, torch.zeros_like) if spliced else nullcontext():
            probe = site.out_module.register_forward_hook(  # runs after the splice hook, sees its result
                lambda m, a, o: seen.__setitem__("h", o[0] if isinstance(o, tuple) else o))
            try:
                tiny_gpt2.model(input_ids=ids)
            finally:
                probe.remove()
        return seen["h"]

    clean, spliced = block_output(False), block_output(True)
    assert (spliced[keep] == 0).all() and (clean[keep] != 0).any()
    assert torch.equal(spliced[~keep], clean[~keep])
    assert torch.equal(block_output(False), clean)  # the splice hooks are gone


def test_store_of_another_model_is_refused(tiny_gpt2, minilm_store):
    with pytest.raises(UserError, match="was cached from minilm"):
        downstream_metrics(minilm_store, identity, model=tiny_gpt2)


def test_non_lm_store_is_refused(tmp_path):
    w = StoreWriter(tmp_path / "syn", 4, source={"kind": "synthetic"})
    w.append(np.random.default_rng(0).normal(size=(64, 4)))
    store = w.close()
    with pytest.raises(UserError, match="need a store cached from a language model"):
        downstream_metrics(store, identity)


def test_score_pack_uses_each_runs_own_k(gpt2_store):
    """A TopK pack with k = 1 and k = 8: each run's downstream numbers come from its own k (run_hps)."""
    from sae_core.config import RunConfig
    from sae_core.lm.downstream import score_pack
    from sae_core.train import TrainOptions, train_pack

    runs = [RunConfig("openai-2024-topk", m=64, steps=30, batch_size=256, lr=3e-3, hparams={"k": k}).resolve()
            for k in (1, 8)]
    res = train_pack(runs, gpt2_store, TrainOptions(keep_weights=True))
    states = [r.weights for r in res]
    hps = [dict(r.hp) for r in runs]
    both = score_pack(gpt2_store, states, arch="topk", hp=hps[0], windows=4, run_hps=hps)
    alone = [score_pack(gpt2_store, [s], arch="topk", hp=h, windows=4)[0] for s, h in zip(states, hps)]
    assert [b["ce_spliced"] for b in both] == [a["ce_spliced"] for a in alone]
    wrong_k = score_pack(gpt2_store, states[1:], arch="topk", hp=hps[0], windows=4)[0]   # k = 1 applied to the k = 8 run
    assert wrong_k["ce_spliced"] != both[1]["ce_spliced"]
