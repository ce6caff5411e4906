"""Pins of `anthropic-2023-10` (Towards Monosemanticity per seed 003): every default, the loss,
the initialisation, the decoder-norm steps in the loop, resampling and the export, each against
values written here by hand."""

import math

import numpy as np
import pytest
import torch

from sae_core.arch import ARCHS
from sae_core.config import RunConfig
from sae_core.export import fold_weights
from sae_core.optim import StackedAdam
from sae_core.recipes import get_recipe
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.train import TrainOptions, train

from .helpers import write_store

RECIPE = "anthropic-2023-10"


def _sae(K=1, n=2, m=3, **hp):
    hp = get_recipe(RECIPE).resolve(hp)
    sae = ARCHS["centred-l1"](K, n, n, m, hp)
    sae.init_params(list(range(K)), False, None)
    return sae


def _set(sae, **values):
    with torch.no_grad():
        for k, v in values.items():
            sae.params[k].copy_(torch.as_tensor(v, dtype=torch.float32))


def test_defaults():
    r = get_recipe(RECIPE)
    assert r.arch == "centred-l1" and not r.supports_transcoder
    assert "seed 003" in r.source and "Towards Monosemanticity" in r.source
    expected = {
        "lr": 1e-3, "lambda": 1.0, "batch_size": 8192, "lr_decay_frac": 0.0, "lambda_warmup_frac": 0.0,
        "grad_clip": 0.0, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_eps": 1e-8, "normalize": True,
        "b_d_init": "geometric_median", "b_d_init_rows": 8192, "resample_every": 25000,
        "resample_last_step": 100000, "resample_dead_steps": 12500, "resample_rows": 819200,
    }
    assert {k: r.defaults[k] for k in expected} == expected
    assert ARCHS["centred-l1"].saelens_architecture == "standard"


def test_loss_terms_and_gradients_by_hand():
    sae = _sae()
    W_e = [[1.0, -2.0, 0.5], [0.5, 1.0, -1.0]]           # [n=2, K*m=3] with K = 1
    _set(sae, W_e=torch.tensor(W_e).view(2, 1, 3), b_e=[[0.1, 0.2, -0.3]],
         W_d=[[[1.2, 1.6], [1.0, 0.0], [0.0, -0.5]]], b_d=[[0.5, -0.5]])   # rows not unit: L1 has no norms
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    # by hand: x_bar = x - b_d; f = relu(x_bar W_e + b_e); x_hat = f W_d + b_d
    xb = x - torch.tensor([0.5, -0.5])
    f = torch.relu(xb @ torch.tensor(W_e) + torch.tensor([0.1, 0.2, -0.3]))
    x_hat = f @ torch.tensor([[1.2, 1.6], [1.0, 0.0], [0.0, -0.5]]) + torch.tensor([0.5, -0.5])
    mse = ((x - x_hat) ** 2).sum(1).mean()
    l1 = f.sum(1).mean()
    t = sae.terms(x, x)
    assert torch.allclose(t.mse, mse.view(1), atol=1e-6)
    assert torch.allclose(t.sparsity, l1.view(1), atol=1e-6)
    assert float(t.aux) == 0.0
    lam = 0.7
    total = t.total(torch.tensor([lam]))
    assert torch.allclose(total, (mse + lam * l1).view(1), atol=1e-6)
    # gradients of the code's loss equal those of the hand loss
    total.sum().backward()
    p = {k: v.detach().clone().requires_grad_(True) for k, v in sae.params.items()}
    f2 = torch.relu((x - p["b_d"][0]) @ p["W_e"][:, 0, :] + p["b_e"][0])
    loss = ((x - (f2 @ p["W_d"][0] + p["b_d"][0])) ** 2).sum(1).mean() + lam * f2.sum(1).mean()
    loss.backward()
    for k in p:
        assert torch.allclose(sae.params[k].grad, p[k].grad, atol=1e-5), k


def test_initialisation():
    n, m, seed = 4, 6, 7
    sae = _sae(n=n, m=m)
    sae.init_params([seed], False, None)
    gen = torch.Generator().manual_seed(seed)
    W_d = torch.randn(m, n, generator=gen)
    W_d = W_d / W_d.norm(dim=1, keepdim=True)                  # random unit directions
    a = 1 / math.sqrt(n)
    W_e = torch.rand(n, m, generator=gen) * 2 * a - a           # U(-1/sqrt(n), 1/sqrt(n)), untied
    assert torch.allclose(sae.params["W_d"][0], W_d)
    assert torch.allclose(sae.params["W_e"][:, 0, :], W_e)
    assert float(sae.params["b_e"].detach().abs().max()) == 0.0 and float(sae.params["b_d"].detach().abs().max()) == 0.0


def test_b_d_starts_at_the_geometric_median():
    # collinear points: the geometric median is the median (2), not the mean (22.6)
    pts = torch.tensor([0.0, 1.0, 2.0, 10.0, 100.0])
    sample = torch.stack([pts, 2 * pts], dim=1)
    sae = _sae()
    assert ARCHS["centred-l1"].data_sample_rows(sae.hp) == 8192
    assert ARCHS["centred-l1"].data_sample_rows(get_recipe(RECIPE).resolve({"b_d_init": "zeros"})) == 0
    sae.init_params([0], False, sample)
    assert torch.allclose(sae.params["b_d"][0], torch.tensor([2.0, 4.0]), atol=1e-3)


def test_decoder_gradient_projection_and_renormalisation():
    sae = _sae(K=1, n=2, m=2)
    _set(sae, W_d=[[[0.6, 0.8], [1.0, 0.0]]])
    sae.params["W_d"].grad = torch.tensor([[[1.0, 1.0], [2.0, 3.0]]])
    sae.adjust_grads()
    # g - (g . w) w: row 0: (1,1) - 1.4 (0.6, 0.8) = (0.16, -0.12); row 1: (2,3) - 2 (1,0) = (0, 3)
    assert torch.allclose(sae.params["W_d"].grad, torch.tensor([[[0.16, -0.12], [0.0, 3.0]]]), atol=1e-6)
    _set(sae, W_d=[[[3.0, 4.0], [0.0, -2.0]]])
    sae.after_step()
    assert torch.allclose(sae.params["W_d"].data, torch.tensor([[[0.6, 0.8], [0.0, -1.0]]]), atol=1e-6)


def test_resample_schedule():
    sae = _sae()
    assert [d for d in (12500, 25000, 50000, 75000, 100000, 125000) if sae.resample_due(d)] == [25000, 50000, 75000, 100000]
    assert sae.resample_rows() == 819200
    assert not any(_sae(resample_every=0).resample_due(d) for d in (25000, 50000))


def _resample_setup(m, **hp):
    sae = _sae(n=2, m=m, **hp)
    W_e = torch.zeros(2, 1, m)
    W_e[:, 0, 0] = torch.tensor([3.0, 0.0])       # alive feature 0: encoder norm 3
    W_e[:, 0, 1] = torch.tensor([0.0, 1.0])       # alive feature 1: encoder norm 1
    W_e[:, 0, 2:] = 5.0
    W_d = torch.zeros(1, m, 2)
    W_d[0, :, 0] = 1.0
    _set(sae, W_e=W_e, W_d=W_d, b_e=torch.full((1, m), -100.0), b_d=[[0.0, 0.0]])
    opt = StackedAdam(sae.params, {"W_e": 1, "b_e": 0, "W_d": 0, "b_d": 0})
    for state in (opt.exp_avg, opt.exp_avg_sq):
        for v in state.values():
            v.fill_(7.0)
    return sae, opt


def test_resample_procedure():
    m = 4
    sae, opt = _resample_setup(m, batch_size=10, resample_dead_steps=3)
    # tokens seen 100, window 3 * 10 = 30 tokens: features 0, 1 fired at 90 and 71 (alive); 2 never and 3 at 70, 30 tokens ago (dead)
    last_fired = torch.tensor([[90, 71, 0, 70]])
    # every feature is off (b_e = -100), so x_hat = b_d = 0 and the loss is ||x||^2:
    # only the row (0, 3) has a nonzero loss, so it is the one drawn
    sample = torch.tensor([[0.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    sae.resample(25000, sample, opt, last_fired, tokens_seen=100)
    p = sae.params
    ref = 0.2 * (3.0 + 1.0) / 2                     # 0.2 x mean alive encoder norm
    for i in (2, 3):
        assert torch.allclose(p["W_d"][0, i], torch.tensor([0.0, 1.0]))
        assert torch.allclose(p["W_e"][:, 0, i], torch.tensor([0.0, ref]))
        assert float(p["b_e"][0, i].detach()) == 0.0
        for state in (opt.exp_avg, opt.exp_avg_sq):
            assert float(state["W_d"][0, i].abs().sum() + state["W_e"][:, 0, i].abs().sum() + state["b_e"][0, i].abs()) == 0.0
    for i in (0, 1):                                # alive features untouched, Adam state kept
        assert torch.allclose(p["W_d"][0, i], torch.tensor([1.0, 0.0]))
        assert float(p["b_e"][0, i].detach()) == -100.0
        assert float(opt.exp_avg["W_d"][0, i, 0]) == 7.0 and float(opt.exp_avg_sq["b_e"][0, i]) == 7.0
    assert float(opt.exp_avg["b_d"].min()) == 7.0


def test_resample_draws_inputs_with_probability_proportional_to_squared_loss():
    m = 2002
    sae, opt = _resample_setup(m, batch_size=1, resample_dead_steps=1)
    last_fired = torch.zeros(1, m, dtype=torch.long)
    last_fired[0, :2] = 10
    # losses ||x||^2 = 1 and 2: squared 1 and 4, so the second row is drawn 4/5 of the time (not 2/3)
    sample = torch.tensor([[1.0, 0.0], [0.0, math.sqrt(2.0)]])
    sae.resample(25000, sample, opt, last_fired, tokens_seen=10)
    frac = float((sae.params["W_d"][0, 2:, 1] > 0.5).double().mean())
    assert abs(frac - 0.8) < 0.04, frac


def test_trainer_applies_unit_norm_and_resampling(tmp_path):
    # every row is the same input, so features whose pre-activation is negative never fire and
    # are resampled at step 5 onto that input's direction
    x = np.zeros((4096, 8), dtype=np.float32)
    x[:, 0] = 2.0
    store = write_store(tmp_path / "s", x)
    hp = {"b_d_init": "zeros", "resample_every": 5, "resample_dead_steps": 5, "resample_rows": 64}
    run = RunConfig(RECIPE, m=32, steps=5, batch_size=64, lr=1e-4, lam=0.1, hparams=hp)
    res = train(run, store, TrainOptions(keep_weights=True))
    W_d = res.weights["W_d"]
    assert torch.allclose(W_d.norm(dim=1), torch.ones(32), atol=1e-5)
    on_input = (W_d[:, 0] > 0.9999).sum()
    assert 4 <= int(on_input) < 32
    off = train(RunConfig(RECIPE, m=32, steps=5, batch_size=64, lr=1e-4, lam=0.1,
                          hparams={**hp, "resample_every": 0}), store, TrainOptions(keep_weights=True))
    assert int((off.weights["W_d"][:, 0] > 0.9999).sum()) == 0


def test_export_folds_the_centring():
    sae = _sae(n=3, m=4)
    torch.manual_seed(0)
    _set(sae, W_e=torch.randn(3, 1, 4), b_e=torch.randn(1, 4), b_d=torch.randn(1, 3))
    state = sae.run_state(0)
    c = 2.5
    w = fold_weights(state, c, c, "centred-l1", dict(sae.hp))
    x = torch.randn(5, 3)
    f = torch.relu((c * x - state["b_d"]) @ state["W_e"] + state["b_e"])   # the model on c x
    y = (f @ state["W_d"] + state["b_d"]) / c                                # back in raw units
    y_exp = torch.relu(x @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"]
    assert torch.allclose(y, y_exp, atol=1e-5)


def test_quality_on_synthetic(cache_dir):
    """Setting for the README: m=128, 1000 steps, batch 256, lr 3e-3, lambda 1 on the small problem."""
    store = synthetic_store(SyntheticConfig(n=32, m_true=64, tokens=100_000, mean_active=3.0, zipf_exponent=0.5), cache_dir)
    r = train(RunConfig(RECIPE, m=128, steps=1000, batch_size=256, lr=3e-3, lam=1.0), store)
    assert r.status == "ok" and r.metrics["mmcs"] >= 0.85, r.metrics
