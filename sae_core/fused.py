"""Fused forward/backward of the stacked ReLU (seed 004) and JumpReLU (seed 000) SAE losses, for training steps.

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


def _ones(workspace: dict, B: int, like: torch.Tensor) -> torch.Tensor:
    """A [1, B] row of ones: batch sums as GEMVs (ones @ A), faster than sum(0) over the outer dim."""
    ones = workspace.get("ones")
    if ones is None or ones.shape[1] != B or ones.dtype != like.dtype or ones.device != like.device:
        ones = workspace["ones"] = torch.ones(1, B, dtype=like.dtype, device=like.device)
    return ones


class _JumpReluSAELoss(torch.autograd.Function):
    """Seed 000's JumpReLU loss for K stacked runs with a hand-written backward (see jumprelu_sae_loss).

    Notation (per run; B rows): theta = exp(t), h' = x W_e + (b_e - theta) (the GEMM's output: the
    bias epilogue subtracts the threshold, so "active" is h' > 0), f = (h' + theta) [h' > 0],
    d_i = ||W_d,i||, T = tanh(c d f), N = #active rows per feature.
      sparsity = sum T / B;  aux = lambda_p / B sum_i d_i R_i, with R_i = sum_b ReLU(theta - below):
        below = h: R = theta (B - N) - sum_b h + f_sum  (sum_b h = (sum_b x) W_e + B b_e: a GEMV)
        below = f: R = theta (B - N)                    (theta > 0 on every inactive row, 0 on active)
    Backward (g_mse, g_s, g_a the upstream scalars; a = g_s c d / B; p = g_a lambda_p d / B):
      df   = a (1 - T^2) + dy W_d^T                     (tanh_backward seeds the GEMM's accumulator)
      S_w  = sum_b df [|h'| < eps/2]                     (hardtanh_backward: the rectangle window)
      below = h: dh = [h' > 0] (df + p) - p, applied as threshold_backward(df + p) and a rank-1
                 correction of dW_e (- (sum_b x) p) and db_e (- B p); dt = -theta/eps S_w + theta p (B - N)
      below = f: dh = [h' > 0] df;  dt = -theta/eps (S_w - p N_w0) + theta p (B - N),
                 N_w0 = #rows with -eps/2 < h' <= 0 (the window's inactive rows, where d aux/d f = -p)
      dW_d = f^T dy + (W_d,i / d_i) dd_i,  dd_i = Q_i / d_i + g_a lambda_p R_i / B,  Q_i = sum_b f a (1 - T^2)
    The backward overwrites the saved activations (it runs once per forward: no retain_graph).
    Counts come from sums of sign(h') (N = (B + sum sign h') / 2), and every batch sum is a GEMV
    with a row of ones; so ties h = theta exactly (measure zero) count half on each side.
    """

    @staticmethod
    def forward(ctx, x, y, W_e, b_e, W_d, b_d, log_threshold, c, eps, lambda_p, preact_on, workspace):
        n, K, m = W_e.shape
        B = x.shape[0]
        theta = log_threshold.exp().to(x.dtype)                                    # [K, m]
        hs = torch.addmm((b_e - theta).reshape(K * m), x, W_e.reshape(n, K * m),
                         out=_buffer(workspace, "h", (B, K * m), x)).view(B, K, m)   # h' = h - theta
        f = torch.add(hs, theta, out=_buffer(workspace, "f", (B, K, m), x))
        torch.ops.aten.threshold_backward.grad_input(f, hs, 0.0, grad_input=f)     # f = h [h > theta]
        err = torch.baddbmm(b_d.unsqueeze(1), f.transpose(0, 1), W_d).sub_(y)      # y_hat - y: [K, B, o]
        mse = err.pow(2).sum(-1).mean(-1)
        dec_norm = W_d.norm(dim=-1)                                                 # [K, m]
        ones = _ones(workspace, B, x)
        T = _buffer(workspace, "T", (K, B, m), x)
        signs = torch.sign(hs, out=T.view(B, K, m))                                 # T's buffer as scratch
        inactive = (B - (ones @ signs.view(B, K * m)).view(K, m)) / 2                # B - N (N = #active)
        torch.mul(f.transpose(0, 1), (c * dec_norm).unsqueeze(1), out=T)
        sparsity = T.tanh_().view(K, B * m).sum(1) / B
        f_sum = (ones @ f.view(B, K * m)).view(K, m)
        x_sum = None
        if preact_on == "h":
            x_sum = x.sum(0)
            h_sum = (x_sum @ W_e.reshape(n, K * m)).view(K, m) + B * b_e
            R = theta * inactive - h_sum + f_sum
        else:
            R = theta * inactive
        aux = lambda_p * (dec_norm * R).sum(-1) / B
        ctx.save_for_backward(x, W_d, hs, f, T, err, dec_norm, theta, inactive, R, x_sum)
        ctx.hp = (c, eps, lambda_p, preact_on, log_threshold.dtype)
        ctx.workspace = workspace
        ctx.mark_non_differentiable(f_sum)
        return mse, sparsity, aux, f_sum

    @staticmethod
    def backward(ctx, g_mse, g_s, g_a, _g_fsum):
        x, W_d, hs, f, T, err, dec_norm, theta, inactive, R, x_sum = ctx.saved_tensors
        c, eps, lambda_p, preact_on, t_dtype = ctx.hp
        B, K, m = f.shape
        n = x.shape[1]
        dy = err * (2.0 / B * g_mse).view(K, 1, 1)                                  # [K, B, o]
        a = (g_s * c / B).unsqueeze(1) * dec_norm                                    # [K, m]
        p = (g_a * lambda_p / B).unsqueeze(1) * dec_norm                             # [K, m]
        dW_d = torch.bmm(f.transpose(0, 1).transpose(1, 2), dy)                      # [K, m, o]
        df = torch.ops.aten.tanh_backward.grad_input(a.unsqueeze(1), T, grad_input=T)   # a (1 - T^2), in T's buffer
        ones = _ones(ctx.workspace, B, x)
        scratch = f.transpose(0, 1)                                                  # f's buffer, free after Q
        torch.mul(f.transpose(0, 1), df, out=scratch)
        Q = (ones @ f.view(B, K * m)).view(K, m)                                     # sum_b f a (1 - T^2)
        torch.baddbmm(df, dy, W_d.transpose(1, 2), out=df)                           # + dy W_d^T
        torch.ops.aten.hardtanh_backward.grad_input(df, hs.transpose(0, 1), -eps / 2, eps / 2, grad_input=scratch)
        window = (ones @ f.view(B, K * m)).view(K, m)                                # S_w
        if preact_on == "h":
            df.add_(p.unsqueeze(1))
            dt = theta * (p * inactive - window / eps)
        else:
            signs = torch.sign(torch.add(hs, eps / 2, out=f), out=f)                 # sign(h' + eps/2)
            edge = (B - (ones @ signs.view(B, K * m)).view(K, m)) / 2                # rows with h' <= -eps/2
            window_inactive = inactive - edge                                        # -eps/2 < h' <= 0
            dt = theta * (p * inactive - (window - p * window_inactive) / eps)
        # dh = df [h' > 0], written by the ReLU-backward kernel into the encoder's [B, K, m] layout
        # (h's buffer, read and written in place), so one GEMM gives every run's dW_e.
        torch.ops.aten.threshold_backward.grad_input(df.transpose(0, 1), hs, 0.0, grad_input=hs)
        dh = hs.reshape(B, K * m)
        dW_e = (x.T @ dh).view(n, K, m)
        db_e = (ones @ dh).view(K, m)
        if preact_on == "h":   # the rank-1 part of dh = [h' > 0] (df + p) - p
            dW_e.sub_(x_sum.view(n, 1, 1) * p)
            db_e.sub_(B * p)
        dd = Q / dec_norm.clamp_min(1e-12) + (g_a * lambda_p / B).unsqueeze(1) * R   # d loss / d ||W_d,i||
        dW_d.add_(W_d * (dd / dec_norm.clamp_min(1e-12)).unsqueeze(-1))
        db_d = dy.sum(1)
        return (None, None, dW_e, db_e, dW_d, db_d, dt.to(t_dtype) if ctx.needs_input_grad[6] else None,
                None, None, None, None, None)


def jumprelu_sae_loss(x: torch.Tensor, y: torch.Tensor, W_e: torch.Tensor, b_e: torch.Tensor, W_d: torch.Tensor,
                      b_d: torch.Tensor, log_threshold: torch.Tensor, *, tanh_c: float, bandwidth: float,
                      lambda_p: float, preact_on: str, workspace: dict | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mse [K], tanh sparsity [K], weighted pre-act loss [K], f_sum [K, m]) of K stacked JumpReLU
    SAEs (seed 000) on a batch, with the fused backward and seed 000's straight-through gradients.

    Same values and gradients as JumpReluSAE.terms through autograd (sae_core.jumprelu), with
    fewer passes over the [B, K, m] activations and buffers reused across steps via `workspace`.
    """
    return _JumpReluSAELoss.apply(x, y, W_e, b_e, W_d, b_d, log_threshold, float(tanh_c), float(bandwidth),
                                  float(lambda_p), preact_on, {} if workspace is None else workspace)
