"""The fused ReLU SAE loss gives autograd's values and gradients exactly (up to float rounding)."""

import pytest
import torch

from sae_core.arch import ReluSAE
from sae_core.config import RunConfig
from sae_core.fused import relu_sae_loss


@pytest.mark.parametrize("K", [1, 3])
def test_fused_relu_loss_matches_autograd(K):
    torch.manual_seed(0)
    n, o, m, B = 12, 12, 40, 64
    hp = dict(RunConfig("anthropic-2024-04", m=m, steps=1).resolve().hp)
    sae = ReluSAE(K, n, o, m, hp)
    sae.init_params([1, 2, 3][:K], False, None)
    with torch.no_grad():   # move away from the symmetric init so every term is non-trivial
        for p in sae.params.values():
            p.add_(0.05 * torch.randn_like(p))
    params = {k: v.double().detach().requires_grad_() for k, v in sae.params.items()}
    x = torch.randn(B, n, dtype=torch.float64)
    y = x + 0.1 * torch.randn(B, o, dtype=torch.float64)
    lam = torch.tensor([0.5, 1.0, 2.0][:K], dtype=torch.float64)
    w_mse = torch.tensor([1.0, 0.7, 1.3][:K], dtype=torch.float64)

    sae.params = params
    ref = sae.terms(x, y)
    ((w_mse * ref.mse).sum() + (lam * ref.sparsity).sum()).backward()
    ref_grads = {k: p.grad.clone() for k, p in params.items()}
    for p in params.values():
        p.grad = None

    workspace = {}
    for _ in range(2):   # the second pass reuses the workspace buffers of the first
        for p in params.values():
            p.grad = None
        mse, l1, f_sum = relu_sae_loss(x, y, params["W_e"], params["b_e"], params["W_d"], params["b_d"], workspace)
        ((w_mse * mse).sum() + (lam * l1).sum()).backward()
    assert set(workspace) == ({"f", "df"} if K == 1 else {"f", "df", "dh"})
    assert torch.allclose(mse, ref.mse.detach(), rtol=1e-12)
    assert torch.allclose(l1, ref.sparsity.detach(), rtol=1e-12)
    assert torch.allclose(f_sum, ref.f_sum, rtol=1e-12)
    for k, p in params.items():
        assert torch.allclose(p.grad, ref_grads[k], rtol=1e-10, atol=1e-12), k
