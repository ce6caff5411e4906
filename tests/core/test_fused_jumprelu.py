"""The fused JumpReLU SAE loss (seed 000) gives autograd's values and gradients to 1e-10 in float64,
for SAEs and transcoders, pre-act loss on h and on f; and its threshold gradient is the seed's formula."""

import math

import pytest
import torch

from sae_core.arch import JumpReluSAE
from sae_core.config import RunConfig
from sae_core.fused import jumprelu_sae_loss


def _setup(K: int, n: int, o: int, preact_on: str, transcoder: bool):
    torch.manual_seed(0)
    m, B = 40, 96
    hp = dict(RunConfig("anthropic-2025-02", m=m, steps=1).resolve().hp)
    hp.update(preact_on=preact_on, lambda_p=0.3)   # a pre-act weight large enough to matter at 1e-10
    sae = JumpReluSAE(K, n, o, m, hp)
    sae.init_params([1, 2, 3][:K], transcoder, None)
    with torch.no_grad():   # spread pre-activations across the threshold and its window
        sae.params["W_e"].mul_(m / n).add_(0.3 * torch.randn_like(sae.params["W_e"]))
        sae.params["b_e"].add_(0.5 * torch.randn_like(sae.params["b_e"]) + 0.8)
        sae.params["log_threshold"].add_(0.2 * torch.randn_like(sae.params["log_threshold"]))
        sae.params["W_d"].add_(0.05 * torch.randn_like(sae.params["W_d"]))
    params = {k: v.double().detach().requires_grad_() for k, v in sae.params.items()}
    x = torch.randn(B, n, dtype=torch.float64)
    y = x if not transcoder else torch.randn(B, o, dtype=torch.float64)
    return sae, params, hp, x, y


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("preact_on", ["h", "f"])
@pytest.mark.parametrize("transcoder", [False, True])
def test_fused_jumprelu_matches_autograd(K: int, preact_on: str, transcoder: bool) -> None:
    n, o = 12, (7 if transcoder else 12)
    sae, params, hp, x, y = _setup(K, n, o, preact_on, transcoder)
    w_mse = torch.tensor([1.0, 0.7, 1.3][:K], dtype=torch.float64)
    lam = torch.tensor([0.5, 2.0, 0.0][:K], dtype=torch.float64)    # 0: lambda warm-up's first step
    w_aux = torch.tensor([1.0, 0.4, 2.0][:K], dtype=torch.float64)

    sae.params = params
    ref = sae.terms(x, y)
    h = x @ params["W_e"].detach().reshape(n, -1) + params["b_e"].detach().reshape(-1)
    active = (h.view(-1, K, 40) > params["log_threshold"].detach().exp()).double().mean()
    assert 0.15 < float(active) < 0.85    # both sides of the threshold are exercised
    ((w_mse * ref.mse).sum() + (lam * ref.sparsity).sum() + (w_aux * ref.aux).sum()).backward()
    ref_grads = {k: p.grad.clone() for k, p in params.items()}

    workspace: dict = {}
    for _ in range(2):   # the second pass reuses the workspace buffers of the first
        for p in params.values():
            p.grad = None
        mse, sparsity, aux, f_sum = jumprelu_sae_loss(
            x, y, params["W_e"], params["b_e"], params["W_d"], params["b_d"], params["log_threshold"],
            tanh_c=hp["tanh_c"], bandwidth=hp["bandwidth"], lambda_p=hp["lambda_p"], preact_on=preact_on,
            workspace=workspace)
        ((w_mse * mse).sum() + (lam * sparsity).sum() + (w_aux * aux).sum()).backward()
    assert set(workspace) == {"h", "f", "T", "ones"}
    for got, want in ((mse, ref.mse), (sparsity, ref.sparsity), (aux, ref.aux), (f_sum, ref.f_sum)):
        assert torch.allclose(got, want.detach(), rtol=1e-12, atol=1e-12)
    for k, p in params.items():
        assert torch.allclose(p.grad, ref_grads[k], rtol=1e-10, atol=1e-12), k


def test_train_terms_uses_the_fused_step() -> None:
    sae, params, hp, x, y = _setup(2, 12, 12, "h", False)
    sae.params = params
    terms = sae.train_terms(x, y)
    assert terms.f is None and terms.mse.grad_fn is not None
    assert type(terms.mse.grad_fn).__name__ == "_JumpReluSAELossBackward"


def test_threshold_and_input_gradients_by_hand() -> None:
    """One run, one feature, decoder row of norm 1 (W_d = [1]), b = 0, n = o = 1; loss = mse only.

    theta = e^0 = 1, eps = 2 (window |h - 1| < 1). Rows h = x: 0.5 (inactive, in window),
    1.5 (active, in window), 3 (active, outside). y = 0, so y_hat = f and d mse / d f_b = 2 f_b / B:
    0, 1, 2 (B = 3). Seed 000: dt = -theta/eps * sum_b [window] d/df_b = -(1/2) (0 + 1) = -0.5;
    dW_e = sum_b x_b [active] d/df_b = 1.5 * 1 + 3 * 2 = 7.5."""
    x = torch.tensor([[0.5], [1.5], [3.0]], dtype=torch.float64)
    W_e = torch.ones(1, 1, 1, dtype=torch.float64, requires_grad=True)
    b_e = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    W_d = torch.ones(1, 1, 1, dtype=torch.float64, requires_grad=True)
    b_d = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    t = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    mse, *_ = jumprelu_sae_loss(x, torch.zeros(3, 1, dtype=torch.float64), W_e, b_e, W_d, b_d, t, tanh_c=4.0,
                                bandwidth=2.0, lambda_p=0.0, preact_on="h")
    assert mse.item() == pytest.approx((1.5**2 + 3.0**2) / 3, rel=1e-14)
    mse.sum().backward()
    assert t.grad.item() == pytest.approx(-0.5, rel=1e-14)
    assert W_e.grad.item() == pytest.approx(7.5, rel=1e-14)
    assert math.isclose(b_e.grad.item(), 3.0, rel_tol=1e-14)   # 1 + 2
