"""Independent float64 reference of the two Anthropic recipes, written from seeds 004 and 000.

Nothing here imports sae_core: every loss, gradient, schedule, optimiser step and metric is
written out by hand from the seeds' formulas (and DESIGN section 3/4), so a pin test compares
the code under test with these, never the code with itself. One run per call; tensors are
W_e [n, m], b_e [m], W_d [m, o] (rows are the seeds' decoder columns), b_d [o], t [m].
Gradients are the analytic ones (chain rule by hand, the seed's JumpReLU pseudo-derivatives),
not autograd.
"""

from __future__ import annotations

import math

import torch

# Seed 004 ("Update on how we train SAEs", April 2024).
RELU_DEFAULTS = {
    "lr": 5e-5, "lambda": 5.0, "batch_size": 4096, "lr_decay_frac": 0.2, "lambda_warmup_frac": 0.05,
    "grad_clip": 1.0, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_eps": 1e-8, "normalize": True,
    "dead_window_tokens": 10_000_000, "precision": "fp32", "decoder_init_norm": 0.1,
}
# Seed 000 (Feb-2025 update): c = 4, eps = 2, lambda_P = 3e-6, lambda_S = 20, t init 0.1, ...
JUMPRELU_DEFAULTS = {
    "lr": 2e-4, "lambda": 20.0, "batch_size": 32768, "lr_decay_frac": 0.2, "lambda_warmup_frac": 1.0,
    "grad_clip": 1.0, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_eps": 1e-8, "normalize": True,
    "dead_window_tokens": 10_000_000, "precision": "fp32", "tanh_c": 4.0, "bandwidth": 2.0,
    "lambda_p": 3e-6, "preact_on": "h", "log_threshold_init": 0.1, "b_e_target_fires": 10000.0,
    "b_e_init_rows": 8192,
}


def relu_loss_and_grads(x, y, W_e, b_e, W_d, b_d, lam, w_mse=1.0):
    """Seed 004: L = mean_b ||y - y_hat||^2 + lam mean_b sum_i f_i ||W_d,i||, and dL/d(params).

    The gradients are those of w_mse * mse + lam * sparsity (w_mse = 0 isolates the penalty).
    """
    B = x.shape[0]
    h = x @ W_e + b_e
    act = (h > 0).double()
    f = h * act
    r = f @ W_d + b_d - y
    s = W_d.norm(dim=1)
    mse = (r * r).sum() / B
    l1 = (f * s).sum() / B
    g_y = 2.0 * w_mse * r / B
    g_f = g_y @ W_d.T + lam * s / B
    g_h = g_f * act
    grads = {
        "W_e": x.T @ g_h, "b_e": g_h.sum(0),
        "W_d": f.T @ g_y + (lam * f.sum(0) / B / s).unsqueeze(1) * W_d,
        "b_d": g_y.sum(0),
    }
    return {"mse": mse, "sparsity": l1, "aux": torch.zeros((), dtype=x.dtype), "loss": mse + lam * l1}, grads


def jumprelu_loss_and_grads(x, y, W_e, b_e, W_d, b_d, t, lam, c=4.0, eps=2.0, lam_p=3e-6, preact_on="h",
                            w_mse=1.0, w_aux=1.0):
    """Seed 000 loss (tanh sparsity, pre-act loss) and its gradients with the seed's pseudo-derivatives.

    L = mean_b [ ||y - y_hat||^2 + lam sum_i tanh(c |f_i| s_i) + lam_p sum_i ReLU(exp(t_i) - g_i) s_i ],
    s_i = ||W_d,i||, g = h (pre-activation) or f. dJ/dh = [h > exp(t)], dJ/dt = -exp(t)/eps inside
    the window |h - exp(t)| < eps/2; the pre-act term's exp(t) is differentiated exactly.
    The gradients are those of w_mse * mse + lam * sparsity + w_aux * aux (weights isolate terms).
    """
    B = x.shape[0]
    theta = t.exp()
    h = x @ W_e + b_e
    act = (h > theta).double()
    f = h * act
    r = f @ W_d + b_d - y
    s = W_d.norm(dim=1)
    th = torch.tanh(c * f.abs() * s)
    g = h if preact_on == "h" else f
    below = (theta - g > 0).double()
    mse = (r * r).sum() / B
    sparsity = th.sum() / B
    aux = lam_p * ((theta - g).clamp_min(0) * s).sum() / B
    g_y = 2.0 * w_mse * r / B
    sech2 = 1.0 - th * th
    # f >= 0 (exp(t) > 0), so |f| = f and d tanh(c f s)/df = c s sech^2 (c s at f = 0: the
    # threshold's pseudo-derivative then sees the penalty from inactive rows inside the window too)
    g_f = g_y @ W_d.T + lam * c * s * sech2 / B
    g_below = w_aux * lam_p * s * below / B                  # d aux / d theta; d aux / d g = -g_below
    if preact_on == "f":
        g_f = g_f - g_below
    g_h = g_f * act
    if preact_on == "h":
        g_h = g_h - g_below
    window = (((h - theta) / eps).abs() < 0.5).double()
    g_t = (g_f * window * (-theta / eps)).sum(0) + g_below.sum(0) * theta
    g_s = (lam * c * f.abs() * sech2).sum(0) / B + w_aux * lam_p * (theta - g).clamp_min(0).sum(0) / B
    grads = {
        "W_e": x.T @ g_h, "b_e": g_h.sum(0),
        "W_d": f.T @ g_y + (g_s / s).unsqueeze(1) * W_d,
        "b_d": g_y.sum(0), "log_threshold": g_t,
    }
    return {"mse": mse, "sparsity": sparsity, "aux": aux, "loss": mse + lam * sparsity + aux}, grads


def lr_factor(step: int, steps: int, frac: float) -> float:
    """Seed 004/000: LR constant, then linear to 0 over the last frac of steps (sampled at step start)."""
    d = max(1, round(frac * steps))
    return min(1.0, (steps - step) / d)


def lambda_factor(step: int, steps: int, frac: float) -> float:
    """Lambda starts at 0 and rises linearly to its final value over the first frac of steps."""
    w = max(1, round(frac * steps))
    return min(1.0, step / w)


def clip(grads: dict, max_norm: float) -> tuple[dict, float]:
    """torch.nn.utils.clip_grad_norm_ semantics over one run's gradients: (clipped, total norm)."""
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    coef = min(1.0, max_norm / (norm + 1e-6))
    return {k: g * coef for k, g in grads.items()}, norm


class Adam:
    """Adam(beta1, beta2, eps), no weight decay, for one run's parameters (the textbook update)."""

    def __init__(self, params: dict, beta1=0.9, beta2=0.999, eps=1e-8):
        self.b1, self.b2, self.eps, self.t = beta1, beta2, eps, 0
        self.m = {k: torch.zeros_like(v) for k, v in params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict, grads: dict, lr: float) -> dict:
        self.t += 1
        out = {}
        for k, g in grads.items():
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            m_hat = self.m[k] / (1 - self.b1 ** self.t)
            v_hat = self.v[k] / (1 - self.b2 ** self.t)
            out[k] = params[k] - lr * m_hat / (v_hat.sqrt() + self.eps)
        return out


def norm_scale(x) -> float:
    """Seeds 004/000: the scalar c with mean_x ||c x||_2 = sqrt(n)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    return math.sqrt(x.shape[1]) / float(x.norm(dim=1).mean())


def eval_metrics(f, y_hat, y, s, sparsity_rows, aux_rows, lam) -> dict:
    """DESIGN section 4 metrics from per-row activations f [N, m], predictions, targets and decoder norms s."""
    N = y.shape[0]
    err = ((y_hat - y) ** 2).sum()
    centred = ((y - y.mean(0)) ** 2).sum()
    active = (f > 0).double()
    nz = y.norm(dim=1) > 0
    return {
        "loss": float((err + lam * sparsity_rows.sum() + aux_rows.sum()) / N),
        "mse": float(err / N), "nmse": float(err / (y ** 2).sum()), "fvu": float(err / centred),
        "l0": float(active.sum() / N), "l1": float((f.abs() * s).sum() / N),
        "sparsity_term": float(sparsity_rows.sum() / N), "aux_term": float(aux_rows.sum() / N),
        "dense_frac": float((active.mean(0) > 0.1).double().mean()),
        "eval_dead_frac": float((active.sum(0) == 0).double().mean()),
        "shrinkage": float((y_hat ** 2).sum() / (y * y_hat).sum()),
        "l2_ratio": float((y_hat[nz].norm(dim=1) / y[nz].norm(dim=1)).mean()),
        "eval_tokens": N,
    }


def relu_rows(x, y, W_e, b_e, W_d, b_d):
    """Per-row (f, y_hat, sparsity, aux) of a ReLU SAE for eval_metrics."""
    f = (x @ W_e + b_e).clamp_min(0)
    s = W_d.norm(dim=1)
    return f, f @ W_d + b_d, (f * s).sum(1), torch.zeros(x.shape[0], dtype=x.dtype)


def jumprelu_rows(x, y, W_e, b_e, W_d, b_d, t, c=4.0, lam_p=3e-6):
    """Per-row (f, y_hat, tanh sparsity, pre-act loss on h) of a JumpReLU SAE for eval_metrics."""
    h = x @ W_e + b_e
    f = h * (h > t.exp())
    s = W_d.norm(dim=1)
    return f, f @ W_d + b_d, torch.tanh(c * f.abs() * s).sum(1), lam_p * ((t.exp() - h).clamp_min(0) * s).sum(1)


def mmcs(decoder, truth) -> tuple[float, float]:
    """Mean over true directions of the best (signed) cosine with any learned row; fraction above 0.9."""
    best = []
    for g in truth:
        cos = [float(g @ d / (g.norm() * d.norm())) for d in decoder]
        best.append(max(cos))
    return sum(best) / len(best), sum(b > 0.9 for b in best) / len(best)
