"""`anthropic-2023-10`: Towards Monosemanticity (Bricken et al. 2023) as seed 003 describes it.

x_bar = x - b_d;  f = ReLU(W_e x_bar + b_e);  x_hat = W_d f + b_d;
L = ||x - x_hat||^2 + lambda * sum_i f_i, with unit-norm decoder rows (the paper's columns):
gradients parallel to each row are projected out before the step and rows are renormalised
after it. Dead features are resampled on a schedule (the paper's procedure, `resample`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sae_core.arch import ARCHS, StackedSAE, fold_decoder_norms
from sae_core.archs.resampling import RESAMPLE_DEFAULTS, Resampling, validate_resample_hp
from sae_core.archs.unitnorm import project_out_parallel, renormalise_rows, unit_rows
from sae_core.errors import UserError
from sae_core.recipes import COMMON_DEFAULTS, Recipe, register_recipe



def geometric_median(x: torch.Tensor, iters: int = 100, eps: float = 1e-8) -> torch.Tensor:
    """Weiszfeld's iteration for argmin_z sum_r ||x_r - z|| over rows x [S, n], from the mean."""
    z = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - z).norm(dim=1).clamp_min(eps)
        z = (w.unsqueeze(1) * x).sum(0) / w.sum()
    return z


class CentredL1SAE(Resampling, StackedSAE):
    """Untied ReLU SAE with the input centred by b_d, plain L1, unit-norm decoder, resampling."""

    arch = "centred-l1"
    saelens_architecture = "standard"

    @classmethod
    def validate_hp(cls, hp: dict[str, Any]) -> None:
        if hp["b_d_init"] not in ("geometric_median", "zeros"):
            raise UserError(f"b_d_init must be 'geometric_median' or 'zeros', got {hp['b_d_init']!r}")
        if hp["b_d_init_rows"] < 0:
            raise UserError(f"b_d_init_rows must be >= 0, got {hp['b_d_init_rows']}")
        validate_resample_hp(hp)

    @classmethod
    def data_sample_rows(cls, hp: dict[str, Any]) -> int:
        return int(hp["b_d_init_rows"]) if hp["b_d_init"] == "geometric_median" else 0

    @classmethod
    def export_tensors(cls, state, hp, scale_x, scale_y):
        """The centring folded into the encoder bias, (x - b_d) W_e + b_e = x W_e + (b_e - b_d W_e)."""
        folded = dict(state)
        folded["b_e"] = (state["b_e"].double() - state["b_d"].double() @ state["W_e"].double()).float()
        return fold_decoder_norms(folded, scale_x, scale_y)

    def _init_run(self, gen: torch.Generator, transcoder: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # Not given by seed 003 or the paper: W_d rows random unit directions; W_e as PyTorch's
        # default Linear init, U(-1/sqrt(n), 1/sqrt(n)), drawn independently (weights are untied).
        W_d = unit_rows((self.m, self.o), gen)
        a = 1.0 / math.sqrt(self.n)
        W_e = torch.rand(self.n, self.m, generator=gen) * (2 * a) - a
        return W_d, W_e

    @torch.no_grad()
    def _init_from_data(self, sample_x: torch.Tensor) -> None:
        self.params["b_d"].copy_(geometric_median(sample_x.double()).float().expand(self.K, -1))

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """h = (x - b_d) W_e + b_e: the shared GEMM x W_e, minus b_d W_e per run."""
        shift = torch.einsum("kn,nkm->km", self.params["b_d"], self.params["W_e"])
        return super().pre_acts(x) - shift

    def activate(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(h)

    def _penalties(self, h, f, dec_norm):
        f_sum = f.sum(0)
        sparsity = f_sum.sum(-1) / f.shape[0]          # L1: mean over the batch of sum_i f_i
        return sparsity, torch.zeros_like(sparsity), f_sum

    def adjust_grads(self) -> None:
        project_out_parallel(self.params["W_d"].grad, self.params["W_d"].detach())

    def after_step(self) -> None:
        renormalise_rows(self.params["W_d"].data)

    def _row_loss(self, x: torch.Tensor) -> torch.Tensor:
        """||x - x_hat||^2 per run and row: [K, rows]."""
        x_hat = self.decode(self.activate(self.pre_acts(x)))
        return (x_hat - x.unsqueeze(0)).pow(2).sum(-1)


ARCHS[CentredL1SAE.arch] = CentredL1SAE

ANTHROPIC_2023_10 = register_recipe(Recipe(
    name="anthropic-2023-10",
    arch=CentredL1SAE.arch,
    source=("seed 003 ('Sparse Autoencoder Architecture', 'Sparse Autoencoder Training': untied, both "
            "biases, resampling) and Bricken et al. 2023 'Towards Monosemanticity' (problem setup, "
            "neuron resampling)"),
    defaults={
        **COMMON_DEFAULTS,
        "lr": 1e-3,                    # saescale choice (the paper swept it; no value in the seed)
        "lambda": 1.0,                 # saescale choice for the normalised synthetic problem
        "batch_size": 8192,            # saescale choice (819,200 resampling inputs = 100 such batches)
        "lr_decay_frac": 0.0,          # no LR schedule in the source
        "lambda_warmup_frac": 0.0,     # no lambda warm-up in the source
        "grad_clip": 0.0,              # no gradient clipping in the source
        "b_d_init": "geometric_median",  # pre-encoder bias b_d at the data's geometric median
        "b_d_init_rows": 8192,         # sample size for that median
        **RESAMPLE_DEFAULTS,
    },
    notes=("Untied ReLU SAE, f = ReLU(W_e (x - b_d) + b_e), x_hat = W_d f + b_d, "
           "L = ||x - x_hat||^2 + lambda sum_i f_i; unit-norm decoder rows (parallel gradient "
           "projected out, rows renormalised each step); dead features resampled on a schedule. "
           "FLOPs: the dense 4nm+6mo count (the centring is per step, not per token)."),
))
