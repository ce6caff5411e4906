"""JumpReLU forward and its seed-000 pseudo-gradients, point by point."""

import math

import pytest
import torch

from sae_core.jumprelu import jumprelu

EPS = 2.0
T = 0.1  # log threshold; threshold = exp(0.1) ~ 1.105


def _grads(h_values, t=T, eps=EPS):
    h = torch.tensor(h_values, dtype=torch.float64, requires_grad=True)
    t = torch.full((len(h_values),), t, dtype=torch.float64, requires_grad=True)
    out = jumprelu(h, t, eps)
    out.sum().backward()
    return out.detach(), h.grad, t.grad


def test_forward_is_h_above_threshold_else_zero():
    thr = math.exp(T)
    out, _, _ = _grads([thr - 0.5, thr - 1e-9, thr + 1e-9, 3.0, -1.0])
    assert out.tolist() == [0.0, 0.0, thr + 1e-9, 3.0, 0.0]


@pytest.mark.parametrize("h,expect_input_grad", [(0.5, 0.0), (1.0, 0.0), (1.2, 1.0), (5.0, 1.0), (-3.0, 0.0)])
def test_input_gradient_is_one_above_threshold(h, expect_input_grad):
    _, gh, _ = _grads([h])
    assert gh.item() == expect_input_grad


@pytest.mark.parametrize("h", [math.exp(T) - 0.99, math.exp(T) - 0.2, math.exp(T), math.exp(T) + 0.5, math.exp(T) + 0.99])
def test_threshold_gradient_inside_window(h):
    _, _, gt = _grads([h])
    assert gt.item() == pytest.approx(-math.exp(T) / EPS, rel=1e-12)


@pytest.mark.parametrize("h", [math.exp(T) - 1.01, math.exp(T) + 1.01, 10.0, -5.0])
def test_threshold_gradient_zero_outside_window(h):
    _, _, gt = _grads([h])
    assert gt.item() == 0.0


def test_threshold_gradient_sums_over_batch_and_scales_with_upstream():
    thr = math.exp(T)
    h = torch.tensor([[thr + 0.1, thr - 0.3], [thr + 3.0, thr + 0.2], [thr - 0.4, thr + 5.0]], requires_grad=True)
    t = torch.full((2,), T, requires_grad=True)
    upstream = torch.tensor([[2.0, 3.0], [5.0, 7.0], [11.0, 13.0]])
    (jumprelu(h, t, EPS) * upstream).sum().backward()
    k = -thr / EPS
    # column 0: rows 0 and 2 inside the window; column 1: rows 0 and 1 inside
    assert t.grad.tolist() == pytest.approx([k * (2.0 + 11.0), k * (3.0 + 7.0)], rel=1e-6)
    assert h.grad.tolist() == [[2.0, 0.0], [5.0, 7.0], [0.0, 13.0]]
