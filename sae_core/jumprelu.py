"""JumpReLU with the straight-through / rectangle-kernel backward of seed 000.

Forward: JumpReLU(h, t) = h if h > exp(t) else 0, with t the per-feature log threshold.
Backward, exactly the seed's two formulas:
  dJ/dh = 1 if h > exp(t) else 0                       (flows to every parameter upstream of h)
  dJ/dt = -exp(t)/eps if -1/2 < (h - exp(t))/eps < 1/2 else 0   (rectangle kernel, bandwidth eps)
Note the seed's dJ/dt is the pseudo-derivative with respect to the threshold theta = exp(t)
(-theta/eps), applied to the log-threshold parameter as written; we follow the seed.
"""

from __future__ import annotations

import torch


def _sum_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back down to `shape`."""
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    for i, size in enumerate(shape):
        if size == 1 and grad.shape[i] != 1:
            grad = grad.sum(i, keepdim=True)
    return grad


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre_acts: torch.Tensor, log_threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        threshold = log_threshold.exp()
        ctx.save_for_backward(pre_acts, threshold)
        ctx.bandwidth = float(bandwidth)
        ctx.threshold_shape = log_threshold.shape
        return pre_acts * (pre_acts > threshold)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        pre_acts, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = grad_out * (pre_acts > threshold) if ctx.needs_input_grad[0] else None
        grad_t = None
        if ctx.needs_input_grad[1]:
            u = (pre_acts - threshold) / eps
            in_window = (u > -0.5) & (u < 0.5)
            grad_t = _sum_to(grad_out * in_window * (-threshold / eps), ctx.threshold_shape)
        return grad_pre, grad_t, None


def jumprelu(pre_acts: torch.Tensor, log_threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """JumpReLU(pre_acts, exp(log_threshold)) with seed 000's pseudo-gradients (see module doc).

    `log_threshold` broadcasts against `pre_acts` (e.g. [m] against [batch, m]); keep it fp32.
    """
    return _JumpReLU.apply(pre_acts, log_threshold, bandwidth)
