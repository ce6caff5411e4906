"""Fused forward/backward of the stacked ReLU SAE loss (seed 004), for training steps.

Autograd makes separate passes over the [B, K, m] activations for the bias add, the ReLU, the
broadcast gradient of the penalty, the mask and a layout copy. Written by hand, the backward
folds the penalty gradient into the decoder GEMM's accumulator (baddbmm with beta = 1) and the
ReLU mask into a single `where`, and never copies the activations. Same maths as ReluSAE.terms:
  h = x W_e + b_e,  f = ReLU(h),  y_hat = f W_d + b_d,
  mse_k = mean_b ||y - y_hat||^2,  l1_k = mean_b sum_i f_i ||W_d,i||.
Gradients (g_mse, g_l1 the upstream scalars per run):
  dy_hat = (2 g_mse / B) (y_hat - y);  db_d = sum_b dy_hat;  dW_d = f^T dy_hat + (g_l1 / B) f_sum_i W_d,i / ||W_d,i||
  df = dy_hat W_d^T + (g_l1 / B) ||W_d,i||;  dh = df * [f > 0];  dW_e = x^T dh;  db_e = sum_b dh.
"""

from __future__ import annotations

import torch


class _ReluSAELoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, W_e, b_e, W_d, b_d):
        n, K, m = W_e.shape
        B = x.shape[0]
        f = torch.addmm(b_e.reshape(K * m), x, W_e.reshape(n, K * m)).relu_().view(B, K, m)
        err = torch.baddbmm(b_d.unsqueeze(1), f.transpose(0, 1), W_d).sub_(y)      # y_hat - y: [K, B, o]
        mse = err.pow(2).sum(-1).mean(-1)
        dec_norm = W_d.norm(dim=-1)
        f_sum = f.sum(0)
        l1 = (f_sum * dec_norm).sum(-1) / B
        ctx.save_for_backward(x, W_d, f, err, dec_norm, f_sum)
        ctx.mark_non_differentiable(f_sum)
        return mse, l1, f_sum

    @staticmethod
    def backward(ctx, g_mse, g_l1, _g_fsum):
        x, W_d, f, err, dec_norm, f_sum = ctx.saved_tensors
        B, K, m = f.shape
        n = x.shape[1]
        dy = err * (2.0 / B * g_mse).view(K, 1, 1)                                  # [K, B, o]
        pen = (g_l1 / B).unsqueeze(1) * dec_norm                                     # [K, m]
        df = torch.baddbmm(pen.unsqueeze(1).expand(K, B, m), dy, W_d.transpose(1, 2))   # [K, B, m]
        dh = torch.where(f > 0, df.transpose(0, 1), 0.0)                             # [B, K, m]
        dW_e = (x.T @ dh.view(B, K * m)).view(n, K, m)
        db_e = dh.sum(0)
        dW_d = torch.bmm(f.transpose(0, 1).transpose(1, 2), dy)                      # [K, m, o]
        dW_d.add_(W_d * ((g_l1 / B).unsqueeze(1) * f_sum / dec_norm.clamp_min(1e-12)).unsqueeze(-1))
        db_d = dy.sum(1)
        return None, None, dW_e, db_e, dW_d, db_d


def relu_sae_loss(x: torch.Tensor, y: torch.Tensor, W_e: torch.Tensor, b_e: torch.Tensor, W_d: torch.Tensor,
                  b_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mse [K], l1 [K], f_sum [K, m]) of K stacked ReLU SAEs on a batch, with the fused backward."""
    return _ReluSAELoss.apply(x, y, W_e, b_e, W_d, b_d)
