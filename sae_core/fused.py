"""Fused forward/backward of the stacked ReLU SAE loss (seed 004), for training steps.

Autograd makes separate passes over the [B, K, m] activations for the bias add, the ReLU, the
broadcast gradient of the penalty, the mask and a layout copy, and allocates fresh [B, K, m]
tensors every step (at B = 4096, m = 32768 each is 512 MB that the allocator maps and faults in
anew). Written by hand, the backward folds the penalty gradient into the decoder GEMM's
accumulator (baddbmm with beta = 1), applies the ReLU mask with the ReLU-backward kernel
writing directly in the encoder's layout (one GEMM for every run's encoder gradient), and
reuses the large buffers across steps. Same maths as ReluSAE.terms:
  h = x W_e + b_e,  f = ReLU(h),  y_hat = f W_d + b_d,
  mse_k = mean_b ||y - y_hat||^2,  l1_k = mean_b sum_i f_i ||W_d,i||.
Gradients (g_mse, g_l1 the upstream scalars per run):
  dy_hat = (2 g_mse / B) (y_hat - y);  db_d = sum_b dy_hat;  dW_d = f^T dy_hat + (g_l1 / B) f_sum_i W_d,i / ||W_d,i||
  df = dy_hat W_d^T + (g_l1 / B) ||W_d,i||;  dh = df * [f > 0];  dW_e = x^T dh;  db_e = sum_b dh.
"""

from __future__ import annotations

import torch


def _buffer(workspace: dict, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A reusable tensor from `workspace` (allocated on first use or when the shape changes)."""
    buf = workspace.get(name)
    if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
        buf = workspace[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
    return buf


class _ReluSAELoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, W_e, b_e, W_d, b_d, workspace):
        n, K, m = W_e.shape
        B = x.shape[0]
        f = torch.addmm(b_e.reshape(K * m), x, W_e.reshape(n, K * m), out=_buffer(workspace, "f", (B, K * m), x))
        f = f.relu_().view(B, K, m)
        err = torch.baddbmm(b_d.unsqueeze(1), f.transpose(0, 1), W_d).sub_(y)      # y_hat - y: [K, B, o]
        mse = err.pow(2).sum(-1).mean(-1)
        dec_norm = W_d.norm(dim=-1)
        f_sum = f.sum(0)
        l1 = (f_sum * dec_norm).sum(-1) / B
        ctx.save_for_backward(x, W_d, f, err, dec_norm, f_sum)
        ctx.workspace = workspace
        ctx.mark_non_differentiable(f_sum)
        return mse, l1, f_sum

    @staticmethod
    def backward(ctx, g_mse, g_l1, _g_fsum):
        x, W_d, f, err, dec_norm, f_sum = ctx.saved_tensors
        B, K, m = f.shape
        n = x.shape[1]
        dy = err * (2.0 / B * g_mse).view(K, 1, 1)                                  # [K, B, o]
        pen = (g_l1 / B).unsqueeze(1) * dec_norm                                     # [K, m]
        # df = dy W_d^T + pen in a reused [K, B, m] buffer: the penalty seeds the GEMM's
        # accumulator (beta = 1). Then dh = df * [f > 0], written by the ReLU-backward kernel
        # straight into the encoder's [B, K, m] layout, so one GEMM gives every run's dW_e.
        df = _buffer(ctx.workspace, "df", (K, B, m), f)
        df.copy_(pen.unsqueeze(1).expand(K, B, m))
        torch.baddbmm(df, dy, W_d.transpose(1, 2), out=df)
        # (with K = 1 both layouts coincide and the elementwise kernel runs in place)
        dh = df.view(B, K, m) if K == 1 else _buffer(ctx.workspace, "dh", (B, K, m), f)
        torch.ops.aten.threshold_backward.grad_input(df.transpose(0, 1), f, 0.0, grad_input=dh)
        dW_e = (x.T @ dh.view(B, K * m)).view(n, K, m)
        db_e = dh.sum(0)
        dW_d = torch.bmm(f.transpose(0, 1).transpose(1, 2), dy)                      # [K, m, o]
        dW_d.add_(W_d * ((g_l1 / B).unsqueeze(1) * f_sum / dec_norm.clamp_min(1e-12)).unsqueeze(-1))
        db_d = dy.sum(1)
        return None, None, dW_e, db_e, dW_d, db_d, None


def relu_sae_loss(x: torch.Tensor, y: torch.Tensor, W_e: torch.Tensor, b_e: torch.Tensor, W_d: torch.Tensor,
                  b_d: torch.Tensor, workspace: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mse [K], l1 [K], f_sum [K, m]) of K stacked ReLU SAEs on a batch, with the fused backward.

    `workspace` (a dict the caller keeps across steps) holds the large activation buffers, so
    steps reuse them instead of allocating and page-faulting [B, K, m] tensors every time.
    """
    return _ReluSAELoss.apply(x, y, W_e, b_e, W_d, b_d, {} if workspace is None else workspace)
