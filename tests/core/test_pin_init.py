"""Pins the initialisations of both recipes beyond tests/core/test_init.py (seeds 004 and 000)."""

import math

import pytest
import torch

from sae_core.arch import ARCHS
from sae_core.config import RunConfig


def _sae(recipe, n, o, m, seeds=(5,), transcoder=False, sample=None, **hp):
    run = RunConfig(recipe, m=m, steps=10, hparams=hp).resolve()
    sae = ARCHS[run.recipe.arch](len(seeds), n, o, m, dict(run.hp))
    sae.init_params(list(seeds), transcoder, sample)
    return sae


def test_relu_decoder_rows_are_random_directions_of_norm_0_1():
    o, m = 16, 3000
    sae = _sae("anthropic-2024-04", o, o, m)
    W_d = sae.params["W_d"].detach()[0].double()
    assert torch.allclose(W_d.norm(dim=1), torch.full((m,), 0.1, dtype=torch.float64), rtol=1e-6)
    u = W_d / W_d.norm(dim=1, keepdim=True)
    assert float(u.mean(0).norm()) < 0.06                     # no preferred direction (isotropic)
    second = u.T @ u / m                                       # E[u u^T] = I / o for uniform directions
    assert torch.allclose(second, torch.eye(o, dtype=torch.float64) / o, atol=0.012)
    assert torch.equal(sae.params["W_e"].detach()[:, 0, :], sae.params["W_d"].detach()[0].T)
    assert not sae.params["b_e"].any() and not sae.params["b_d"].any()
    assert set(sae.params) == {"W_e", "b_e", "W_d", "b_d"}


def test_relu_needs_no_data_sample():
    run = RunConfig("anthropic-2024-04", m=8, steps=10).resolve()
    assert ARCHS["relu"].data_sample_rows(dict(run.hp)) == 0


def test_jumprelu_decoder_bound_uses_input_dim_n():
    """W_d ~ U(-1/sqrt(n), 1/sqrt(n)) with n the INPUT dimension, also for a transcoder (o != n)."""
    n, o, m = 4, 64, 500
    sae = _sae("anthropic-2025-02", n, o, m, transcoder=True)
    W_d = sae.params["W_d"].detach()[0].double()
    a = 1 / math.sqrt(n)
    assert float(W_d.abs().max()) <= a and float(W_d.abs().max()) > 0.99 * a
    assert float(W_d.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(W_d.var()) == pytest.approx(a * a / 3, rel=0.03)
    W_e = sae.params["W_e"].detach()[:, 0, :].double()
    b = 1 / math.sqrt(m)
    assert float(W_e.abs().max()) <= b and float(W_e.abs().max()) > 0.99 * b
    assert float(W_e.var()) == pytest.approx(b * b / 3, rel=0.05)


def test_jumprelu_sae_encoder_is_n_over_m_decoder_transpose_and_biases():
    n, m = 6, 40
    sae = _sae("anthropic-2025-02", n, n, m)
    W_d, W_e = sae.params["W_d"].detach()[0], sae.params["W_e"].detach()[:, 0, :]
    assert torch.allclose(W_e, W_d.T * (6 / 40), rtol=1e-6, atol=0)
    assert not sae.params["b_d"].any() and not sae.params["b_e"].any()    # no data sample: b_e stays 0
    assert torch.equal(sae.params["log_threshold"].detach(), torch.full((1, m), 0.1))
    run = RunConfig("anthropic-2025-02", m=m, steps=10).resolve()
    assert ARCHS["jumprelu"].data_sample_rows(dict(run.hp)) == 8192


def test_jumprelu_b_e_fires_10000_over_m_of_the_sample_at_defaults():
    """With the default target 10000 and m = 40000, each feature fires on 1/4 of the sample."""
    n, m, rows = 3, 40000, 400
    gen = torch.Generator().manual_seed(2)
    sample = torch.randn(rows, n, generator=gen)
    sae = _sae("anthropic-2025-02", n, n, m, sample=sample)
    h = sample @ sae.params["W_e"].detach()[:, 0, :] + sae.params["b_e"].detach()[0]
    frac = (h > math.exp(0.1)).double().mean(0)
    assert float(frac.mean()) == pytest.approx(0.25, abs=1e-3)
    # float32 near-ties (W_e is tiny at n/m = 3/40000) may move a few rows across the threshold
    assert float(((frac - 0.25).abs() <= 1.5 / rows).double().mean()) > 0.95


def test_pack_run_k_initialises_as_a_single_run_with_its_seed():
    for recipe in ("anthropic-2024-04", "anthropic-2025-02"):
        pack = _sae(recipe, 5, 5, 9, seeds=(21, 22))
        alone = _sae(recipe, 5, 5, 9, seeds=(22,))
        assert torch.equal(pack.params["W_d"].detach()[1], alone.params["W_d"].detach()[0])
        assert torch.equal(pack.params["W_e"].detach()[:, 1], alone.params["W_e"].detach()[:, 0])
        assert not torch.equal(pack.params["W_d"].detach()[0], pack.params["W_d"].detach()[1])
