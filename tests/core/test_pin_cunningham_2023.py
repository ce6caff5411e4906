"""Pins of `cunningham-2023` (seed 003): defaults, the tied loss and its gradients, the
initialisation, the unit-norm rows in the loop and the export, against values written here."""

import torch

from sae_core.arch import ARCHS
from sae_core.config import RunConfig
from sae_core.export import fold_weights
from sae_core.recipes import get_recipe
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.train import TrainOptions, train

RECIPE = "cunningham-2023"
SMALL = SyntheticConfig(n=32, m_true=64, tokens=100_000, mean_active=3.0, zipf_exponent=0.5)


def _sae(K=1, n=2, m=3, **hp):
    sae = ARCHS["tied"](K, n, n, m, get_recipe(RECIPE).resolve(hp))
    sae.init_params(list(range(K)), False, None)
    return sae


def test_defaults():
    r = get_recipe(RECIPE)
    assert r.arch == "tied" and not r.supports_transcoder and "seed 003" in r.source
    expected = {"lr": 1e-3, "lambda": 1.5, "batch_size": 4096, "lr_decay_frac": 0.0, "lambda_warmup_frac": 0.0,
                "grad_clip": 0.0, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_eps": 1e-8, "normalize": True}
    assert {k: r.defaults[k] for k in expected} == expected
    assert ARCHS["tied"].saelens_architecture == "standard"


def test_parameters_are_one_matrix_and_an_encoder_bias():
    sae = _sae(K=2, n=3, m=4)
    assert {k: tuple(v.shape) for k, v in sae.params.items()} == {"W_d": (2, 4, 3), "b_e": (2, 4)}


def test_loss_terms_and_gradients_by_hand():
    sae = _sae()
    M = torch.tensor([[1.2, 1.6], [1.0, 0.0], [0.0, -0.5]])    # rows not unit: L1 has no norms
    b = torch.tensor([0.1, -0.2, 0.3])
    with torch.no_grad():
        sae.params["W_d"].copy_(M.unsqueeze(0))
        sae.params["b_e"].copy_(b.unsqueeze(0))
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.5, -2.0]])
    lam = 0.7
    t = sae.terms(x, x)
    Mg = M.clone().requires_grad_(True)
    bg = b.clone().requires_grad_(True)
    f = torch.relu(x @ Mg.T + bg)                   # f = ReLU(M x + b)
    x_hat = f @ Mg                                  # x_hat = M^T f, no decoder bias
    mse = ((x - x_hat) ** 2).sum(1).mean()
    l1 = f.sum(1).mean()
    assert torch.allclose(t.mse, mse.view(1), atol=1e-6)
    assert torch.allclose(t.sparsity, l1.view(1), atol=1e-6)
    assert float(t.aux) == 0.0
    t.total(torch.tensor([lam])).sum().backward()
    (mse + lam * l1).backward()
    assert torch.allclose(sae.params["W_d"].grad[0], Mg.grad, atol=1e-5)
    assert torch.allclose(sae.params["b_e"].grad[0], bg.grad, atol=1e-5)


def test_initialisation():
    n, m, seed = 3, 5, 9
    sae = _sae(n=n, m=m)
    sae.init_params([seed], False, None)
    M = torch.randn(m, n, generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(sae.params["W_d"][0], M / M.norm(dim=1, keepdim=True))
    assert float(sae.params["b_e"].detach().abs().max()) == 0.0


def test_rows_renormalised_after_each_step_and_gradients_untouched():
    sae = _sae(m=2)
    with torch.no_grad():
        sae.params["W_d"].copy_(torch.tensor([[[3.0, 4.0], [0.0, -2.0]]]))
    sae.params["W_d"].grad = torch.tensor([[[1.0, 1.0], [2.0, 3.0]]])
    sae.adjust_grads()
    assert torch.equal(sae.params["W_d"].grad, torch.tensor([[[1.0, 1.0], [2.0, 3.0]]]))
    sae.after_step()
    assert torch.allclose(sae.params["W_d"].data, torch.tensor([[[0.6, 0.8], [0.0, -1.0]]]), atol=1e-6)


def test_export_is_a_standard_sae_with_the_same_function():
    sae = _sae(n=3, m=4)
    torch.manual_seed(0)
    with torch.no_grad():
        sae.params["W_d"].copy_(torch.randn(1, 4, 3))
        sae.params["b_e"].copy_(torch.randn(1, 4))
    state = sae.run_state(0)
    c = 1.5
    w = fold_weights(state, c, c, "tied", dict(sae.hp))
    assert float(w["b_dec"].abs().max()) == 0.0
    x = torch.randn(5, 3)
    M = state["W_d"]
    y = (torch.relu(c * x @ M.T + state["b_e"]) @ M) / c
    y_exp = torch.relu(x @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"]
    assert torch.allclose(y, y_exp, atol=1e-5)


def test_trainer_keeps_unit_rows_and_dense_flops(cache_dir):
    store = synthetic_store(SMALL, cache_dir)
    res = train(RunConfig(RECIPE, m=16, steps=5, batch_size=64, lr=1e-2), store, TrainOptions(keep_weights=True))
    assert set(res.weights) == {"W_d", "b_e"}
    assert torch.allclose(res.weights["W_d"].norm(dim=1), torch.ones(16), atol=1e-5)
    assert res.info["flops_convention"] == "sae-dense-4nm+6mo"
    assert res.info["flops_per_token"] == 4 * 32 * 16 + 6 * 16 * 32


def test_quality_on_synthetic(cache_dir):
    """Setting for the README: m=64, 1000 steps, batch 512, lr 1e-2, lambda 1.5 on the small problem."""
    store = synthetic_store(SMALL, cache_dir)
    r = train(RunConfig(RECIPE, m=64, steps=1000, batch_size=512, lr=1e-2, lam=1.5), store)
    assert r.status == "ok" and r.metrics["mmcs"] >= 0.85, r.metrics
