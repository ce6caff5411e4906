"""Initialisation statistics of both recipes, the b_e data init, and the normalisation constant."""

import math

import numpy as np
import pytest
import torch

from sae_core.arch import ARCHS, init_b_e
from sae_core.config import RunConfig
from sae_core.store import estimate_norm_scales

from .helpers import write_store


def _sae(recipe, n=16, o=16, m=48, K=3, transcoder=False, sample=None, **hp):
    run = RunConfig(recipe, m=m, steps=10, hparams=hp).resolve()
    sae = ARCHS[run.recipe.arch](K, n, o, m, dict(run.hp))
    sae.init_params([11, 12, 13][:K], transcoder, sample)
    return sae


def test_relu_init_decoder_norm_and_tied_encoder():
    sae = _sae("anthropic-2024-04")
    W_e, W_d = sae.params["W_e"].detach(), sae.params["W_d"].detach()
    assert torch.allclose(W_d.norm(dim=-1), torch.full((3, 48), 0.1), atol=1e-6)
    for k in range(3):
        assert torch.equal(W_e[:, k, :], W_d[k].T)
    assert not torch.equal(W_d[0], W_d[1])  # each run its own seed
    assert sae.params["b_e"].abs().sum() == 0 and sae.params["b_d"].abs().sum() == 0


def test_relu_decoder_init_norm_is_overridable():
    sae = _sae("anthropic-2024-04", decoder_init_norm=0.5)
    assert torch.allclose(sae.params["W_d"].detach().norm(dim=-1), torch.full((3, 48), 0.5), atol=1e-6)


def test_jumprelu_init_uniform_decoder_scaled_transpose_encoder():
    n, m = 16, 48
    sae = _sae("anthropic-2025-02", n=n, m=m)
    W_e, W_d = sae.params["W_e"].detach(), sae.params["W_d"].detach()
    bound = 1 / math.sqrt(n)
    assert W_d.abs().max() <= bound and W_d.abs().max() > 0.9 * bound
    assert abs(W_d.mean().item()) < 0.02
    assert W_d.var().item() == pytest.approx(bound**2 / 3, rel=0.1)   # variance of U(-a, a) is a^2/3
    for k in range(3):
        assert torch.allclose(W_e[:, k, :], (n / m) * W_d[k].T)
    assert torch.allclose(sae.params["log_threshold"].detach(), torch.full((3, m), 0.1))
    assert sae.params["log_threshold"].dtype == torch.float32


def test_jumprelu_transcoder_encoder_uniform_in_one_over_sqrt_m():
    n, o, m = 16, 24, 400
    sae = _sae("anthropic-2025-02", n=n, o=o, m=m, transcoder=True)
    W_e = sae.params["W_e"].detach()
    bound = 1 / math.sqrt(m)
    assert W_e.abs().max() <= bound and W_e.abs().max() > 0.9 * bound
    assert W_e.var().item() == pytest.approx(bound**2 / 3, rel=0.1)
    assert sae.params["W_d"].shape == (3, m, o)


@pytest.mark.parametrize("m,target,expected", [(48, 10000.0, 1.0), (400, 100.0, 0.25), (1000, 50.0, 0.05)])
def test_b_e_init_hits_target_firing_fraction(m, target, expected):
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2000, 16, generator=gen) * 3
    sae = _sae("anthropic-2025-02", m=m, sample=sample, b_e_target_fires=target)
    h = sample @ sae.params["W_e"].detach().reshape(16, -1)
    h = h.view(2000, 3, m) + sae.params["b_e"].detach()
    fired = (h > sae.params["log_threshold"].detach().exp()).double().mean(0)   # per run and feature
    # exact up to float32 near-ties: at most one sample row per feature may land on the other side
    assert (fired - expected).abs().max() <= 1 / 2000 + 1e-12
    assert fired.mean().item() == pytest.approx(expected, abs=2e-5)


def test_init_b_e_exact_order_statistic():
    x = torch.arange(10, dtype=torch.float32).unsqueeze(1)   # pre-acts 0..9 with W_e = 1
    b = init_b_e(x, torch.ones(1, 1, 1), torch.ones(1, 1), frac=0.3)
    # 3 of 10 fire: crossing midway between 6 and 7 -> b_e = 1 - 6.5
    assert b.item() == pytest.approx(1 - 6.5)


def test_normalisation_constant_gives_mean_norm_sqrt_n(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 24)) * 7.0 + 1.0
    store = write_store(tmp_path / "s", x.astype(np.float32), eval_rows=1000)
    cx, cy = estimate_norm_scales(store)
    train = x[:4000]
    assert np.linalg.norm(train * store.meta.norm_scale, axis=1).mean() == pytest.approx(math.sqrt(24), rel=1e-5)
    assert cx == pytest.approx(store.meta.norm_scale) and cy == cx


def test_normalisation_of_targets_uses_their_own_scale(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    y = (rng.normal(size=(3000, 12)) * 5).astype(np.float32)
    store = write_store(tmp_path / "t", x, y, eval_rows=500)
    ty = y[:2500] * store.meta.target_norm_scale
    assert np.linalg.norm(ty, axis=1).mean() == pytest.approx(math.sqrt(12), rel=1e-5)
