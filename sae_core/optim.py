"""Adam and grad-norm clipping for K stacked runs, each with its own LR and clip.

torch.optim.Adam takes one scalar LR per parameter tensor; a stacked module keeps K runs in
one tensor, so the update is written here, line for line as torch's single-tensor Adam
(no weight decay, no amsgrad), with the LR a per-run vector. `clip_grad_norm_per_run`
mirrors torch.nn.utils.clip_grad_norm_ but takes each run's norm over its own slices.
"""

from __future__ import annotations

import torch


def _per_run(values: torch.Tensor, like: torch.Tensor, run_dim: int) -> torch.Tensor:
    """View a [K] vector so it broadcasts along `run_dim` of `like`."""
    shape = [1] * like.dim()
    shape[run_dim] = -1
    return values.view(shape)


def clip_grad_norm_per_run(params: dict[str, torch.Tensor], run_dims: dict[str, int], max_norm: float) -> torch.Tensor:
    """Scale each run's gradients so its total 2-norm is at most max_norm; return the norms [K]."""
    sq = None
    for name, p in params.items():
        d = run_dims[name]
        dims = [i for i in range(p.dim()) if i != d]
        # vector_norm reduces without materialising grad**2 (a parameter-sized temporary)
        s = torch.linalg.vector_norm(p.grad, dim=dims).square() if dims else p.grad.square()
        sq = s if sq is None else sq + s
    norms = sq.sqrt()
    if max_norm > 0:
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for name, p in params.items():
            p.grad.mul_(_per_run(coef, p.grad, run_dims[name]))
    return norms


class StackedAdam:
    """Adam(beta1, beta2, eps), no weight decay, over stacked parameters with per-run LRs."""

    def __init__(self, params: dict[str, torch.Tensor], run_dims: dict[str, int],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = params
        self.run_dims = run_dims
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.step_count = 0
        self.exp_avg = {k: torch.zeros_like(p) for k, p in params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(p) for k, p in params.items()}
        self._update = {k: torch.empty_like(p) for k, p in params.items()}  # reused: no per-step temporaries

    @torch.no_grad()
    def step(self, lrs: torch.Tensor) -> None:
        """One Adam update; `lrs` [K] is each run's learning rate for this step."""
        self.step_count += 1
        bias_correction1 = 1 - self.beta1 ** self.step_count
        bias_correction2_sqrt = (1 - self.beta2 ** self.step_count) ** 0.5
        for name, p in self.params.items():
            grad, m, v, u = p.grad, self.exp_avg[name], self.exp_avg_sq[name], self._update[name]
            m.lerp_(grad, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            torch.sqrt(v, out=u).div_(bias_correction2_sqrt).add_(self.eps)        # denom
            torch.div(m, u, out=u).mul_(_per_run(lrs / bias_correction1, p, self.run_dims[name]))
            p.sub_(u)

    def state_for_run(self, k: int) -> dict[str, torch.Tensor]:
        """Run k's slices of the moment estimates (for its checkpoint)."""
        out = {}
        for name in self.params:
            d = self.run_dims[name]
            out[f"exp_avg.{name}"] = self.exp_avg[name].select(d, k).clone()
            out[f"exp_avg_sq.{name}"] = self.exp_avg_sq[name].select(d, k).clone()
        return out

    def load_run(self, k: int, state: dict[str, torch.Tensor]) -> None:
        """Restore run k's moment estimates from `state_for_run` output."""
        for name in self.params:
            d = self.run_dims[name]
            self.exp_avg[name].select(d, k).copy_(state[f"exp_avg.{name}"])
            self.exp_avg_sq[name].select(d, k).copy_(state[f"exp_avg_sq.{name}"])
