"""Pins the loss terms and gradients of both Anthropic recipes against pin_reference (hand formulas).

Every check runs on a stacked pack of two runs in float64 with each run's own lambda, at the
recipes' resolved defaults, so a changed term, coefficient, default or pseudo-derivative fails.
"""

import pytest
import torch

from sae_core.arch import ARCHS
from sae_core.config import RunConfig

from . import pin_reference as ref

N, O, M, B, K = 5, 5, 7, 24, 2
LAMS = torch.tensor([0.7, 2.5], dtype=torch.float64)


def _pack(recipe: str, transcoder: bool = False, **hp):
    """A K=2 pack of `recipe` with random float64 parameters covering every regime of the activation."""
    run = RunConfig(recipe, m=M, steps=10, hparams=hp).resolve()
    o = O + 2 if transcoder else O
    sae = ARCHS[run.recipe.arch](K, N, o, M, dict(run.hp))
    gen = torch.Generator().manual_seed(7)
    params = {
        "W_e": torch.randn(N, K, M, generator=gen, dtype=torch.float64) * 0.8,
        "b_e": torch.randn(K, M, generator=gen, dtype=torch.float64) * 0.5 + 0.3,
        "W_d": torch.randn(K, M, o, generator=gen, dtype=torch.float64) * torch.rand(K, M, 1, generator=gen, dtype=torch.float64),
        "b_d": torch.randn(K, o, generator=gen, dtype=torch.float64) * 0.2,
    }
    if run.recipe.arch == "jumprelu":
        params["log_threshold"] = torch.rand(K, M, generator=gen, dtype=torch.float64) * 0.6 - 0.2
    sae.params = {k: v.requires_grad_() for k, v in params.items()}
    x = torch.randn(B, N, generator=gen, dtype=torch.float64) * 1.5
    y = x if not transcoder else torch.randn(B, o, generator=gen, dtype=torch.float64)
    return sae, x, y


def _run_params(sae, k):
    p = {name: t.detach() for name, t in sae.params.items()}
    out = {"W_e": p["W_e"][:, k, :], "b_e": p["b_e"][k], "W_d": p["W_d"][k], "b_d": p["b_d"][k]}
    if "log_threshold" in p:
        out["t"] = p["log_threshold"][k]
    return out


def _grads_of(sae, scalar):
    for p in sae.params.values():
        p.grad = None
    scalar.backward()
    return {name: torch.zeros_like(p) if p.grad is None else p.grad.clone() for name, p in sae.params.items()}


def _assert_run_grads(grads, expected, k):
    for name, g in expected.items():
        got = grads[name][:, k, :] if name == "W_e" else grads[name][k]
        assert torch.allclose(got, g, rtol=1e-9, atol=1e-13), (name, k, (got - g).abs().max())


def _relu_ref(sae, x, y, k, lam, w_mse=1.0):
    p = _run_params(sae, k)
    return ref.relu_loss_and_grads(x, y, p["W_e"], p["b_e"], p["W_d"], p["b_d"], lam, w_mse=w_mse)


@pytest.mark.parametrize("path", ["terms", "train_terms"])   # autograd (eval) and fused (training)
def test_relu_terms_values_and_gradients(path):
    sae, x, y = _pack("anthropic-2024-04")
    t = getattr(sae, path)(x, y)
    for k in range(K):
        vals, _ = _relu_ref(sae, x, y, k, 1.0)
        assert float(t.mse[k].detach()) == pytest.approx(float(vals["mse"]), rel=1e-12)
        assert float(t.sparsity[k].detach()) == pytest.approx(float(vals["sparsity"]), rel=1e-12)
        assert float(t.aux[k].detach()) == 0.0
        assert float(t.total(LAMS)[k].detach()) == pytest.approx(float(vals["mse"] + LAMS[k] * vals["sparsity"]), rel=1e-12)
    f = (x @ sae.params["W_e"].detach().reshape(N, K * M) + sae.params["b_e"].detach().reshape(-1)).clamp_min(0)
    assert torch.allclose(t.f_sum, f.view(B, K, M).sum(0), rtol=1e-12)
    grads = _grads_of(sae, t.total(LAMS).sum())
    for k in range(K):
        _assert_run_grads(grads, _relu_ref(sae, x, y, k, float(LAMS[k]))[1], k)


@pytest.mark.parametrize("path", ["terms", "train_terms"])
def test_relu_penalty_gradient_alone(path):
    """The L1 x decoder-norm term's gradient on its own (the MSE gradient would dominate it)."""
    sae, x, y = _pack("anthropic-2024-04")
    t = getattr(sae, path)(x, y)
    grads = _grads_of(sae, (LAMS * t.sparsity).sum())
    for k in range(K):
        _assert_run_grads(grads, _relu_ref(sae, x, y, k, float(LAMS[k]), w_mse=0.0)[1], k)


def _jr_ref(sae, x, y, k, lam, preact_on="h", **w):
    p = _run_params(sae, k)
    return ref.jumprelu_loss_and_grads(x, y, p["W_e"], p["b_e"], p["W_d"], p["b_d"], p["t"], lam,
                                       preact_on=preact_on, **w)


def test_jumprelu_regimes_are_all_present():
    """The fixture has rows above the threshold, inside the kernel window below it, and outside."""
    sae, x, _ = _pack("anthropic-2025-02")
    h = x @ sae.params["W_e"].detach().reshape(N, K * M) + sae.params["b_e"].detach().reshape(-1)
    theta = sae.params["log_threshold"].detach().exp().reshape(-1)
    u = (h - theta) / 2.0
    assert (u > 0.5).any() and ((u > 0) & (u < 0.5)).any() and ((u < 0) & (u > -0.5)).any() and (u < -0.5).any()


@pytest.mark.parametrize("preact_on,transcoder", [("h", False), ("f", False), ("h", True)])
def test_jumprelu_terms_values_and_gradients(preact_on, transcoder):
    sae, x, y = _pack("anthropic-2025-02", transcoder=transcoder, preact_on=preact_on)
    t = sae.terms(x, y)
    for k in range(K):
        vals, _ = _jr_ref(sae, x, y, k, 1.0, preact_on)
        for term in ("mse", "sparsity", "aux"):
            assert float(getattr(t, term)[k].detach()) == pytest.approx(float(vals[term]), rel=1e-12), term
        assert float(vals["aux"]) > 0
        assert float(t.total(LAMS)[k].detach()) == pytest.approx(float(vals["mse"] + LAMS[k] * vals["sparsity"] + vals["aux"]),
                                                        rel=1e-12)
    grads = _grads_of(sae, t.total(LAMS).sum())
    for k in range(K):
        _assert_run_grads(grads, _jr_ref(sae, x, y, k, float(LAMS[k]), preact_on)[1], k)


@pytest.mark.parametrize("term", ["sparsity", "aux"])
def test_jumprelu_single_term_gradients(term):
    """Each penalty's gradient alone, including the tiny pre-act loss (lambda_P = 3e-6)."""
    sae, x, y = _pack("anthropic-2025-02")
    t = sae.terms(x, y)
    scalar = (LAMS * t.sparsity).sum() if term == "sparsity" else t.aux.sum()
    grads = _grads_of(sae, scalar)
    for k in range(K):
        lam = float(LAMS[k]) if term == "sparsity" else 0.0
        expected = _jr_ref(sae, x, y, k, lam, w_mse=0.0, w_aux=1.0 if term == "aux" else 0.0)[1]
        _assert_run_grads(grads, expected, k)


def test_jumprelu_default_constants_enter_the_loss():
    """c = 4, lambda_P = 3e-6 on h, eps = 2: the same loss from the reference's literal constants."""
    sae, x, y = _pack("anthropic-2025-02")
    assert (sae.hp["tanh_c"], sae.hp["bandwidth"], sae.hp["lambda_p"], sae.hp["preact_on"]) == (4.0, 2.0, 3e-6, "h")
    t = sae.terms(x, y)
    p = _run_params(sae, 0)
    vals, _ = ref.jumprelu_loss_and_grads(x, y, p["W_e"], p["b_e"], p["W_d"], p["b_d"], p["t"], 1.0,
                                          c=4.0, eps=2.0, lam_p=3e-6)
    assert float(t.sparsity[0].detach()) == pytest.approx(float(vals["sparsity"]), rel=1e-12)
    assert float(t.aux[0].detach()) == pytest.approx(float(vals["aux"]), rel=1e-12)
