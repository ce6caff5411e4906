"""Stacked Adam and per-run clipping equal torch's Adam and clip_grad_norm_ run by run."""

import torch

from sae_core.optim import StackedAdam, clip_grad_norm_per_run


def test_stacked_adam_matches_torch_adam_per_run():
    gen = torch.Generator().manual_seed(0)
    K, lrs = 3, [1e-3, 5e-3, 2e-2]
    W = torch.randn(5, K, 7, generator=gen, dtype=torch.float64)
    b = torch.randn(K, 7, generator=gen, dtype=torch.float64)
    stacked = {"W": W.clone().requires_grad_(), "b": b.clone().requires_grad_()}
    opt = StackedAdam(stacked, {"W": 1, "b": 0})
    refs = []
    for k in range(K):
        p = [W[:, k, :].clone().requires_grad_(), b[k].clone().requires_grad_()]
        refs.append((p, torch.optim.Adam(p, lr=lrs[k], betas=(0.9, 0.999), eps=1e-8)))
    for _ in range(25):
        gW = torch.randn(5, K, 7, generator=gen, dtype=torch.float64)
        gb = torch.randn(K, 7, generator=gen, dtype=torch.float64)
        stacked["W"].grad, stacked["b"].grad = gW.clone(), gb.clone()
        opt.step(torch.tensor(lrs, dtype=torch.float64))
        for k, (p, o) in enumerate(refs):
            p[0].grad, p[1].grad = gW[:, k, :].clone(), gb[k].clone()
            o.step()
    for k, (p, _) in enumerate(refs):
        assert torch.allclose(stacked["W"].detach()[:, k, :], p[0].detach(), rtol=1e-12, atol=1e-14)
        assert torch.allclose(stacked["b"].detach()[k], p[1].detach(), rtol=1e-12, atol=1e-14)


def test_per_run_clip_matches_torch_clip_grad_norm():
    gen = torch.Generator().manual_seed(1)
    K = 4
    W = torch.zeros(6, K, 3, requires_grad=True)
    b = torch.zeros(K, 3, requires_grad=True)
    W.grad = torch.randn(6, K, 3, generator=gen) * torch.tensor([0.01, 1.0, 10.0, 100.0]).view(1, K, 1)
    b.grad = torch.randn(K, 3, generator=gen)
    expected = []
    for k in range(K):
        pw = torch.zeros(6, 3, requires_grad=True)
        pb = torch.zeros(3, requires_grad=True)
        pw.grad, pb.grad = W.grad[:, k, :].clone(), b.grad[k].clone()
        norm = torch.nn.utils.clip_grad_norm_([pw, pb], 1.0)
        expected.append((norm, pw.grad, pb.grad))
    norms = clip_grad_norm_per_run({"W": W, "b": b}, {"W": 1, "b": 0}, 1.0)
    for k, (norm, gw, gb) in enumerate(expected):
        assert torch.allclose(norms[k], norm, rtol=1e-6)
        assert torch.allclose(W.grad[:, k, :], gw, rtol=1e-6)
        assert torch.allclose(b.grad[k], gb, rtol=1e-6)
    assert norms[0] < 1 and torch.allclose(W.grad[:, 0, :].norm(), expected[0][1].norm())  # small run untouched
