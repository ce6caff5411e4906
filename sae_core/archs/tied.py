"""`cunningham-2023`: Cunningham et al. 2023 as seed 003 describes it (tied weights, encoder bias only).

f = ReLU(M x + b);  x_hat = M^T f;  L = ||x - x_hat||^2 + lambda * sum_i f_i, with the rows of the
dictionary M [m, n] renormalised to unit norm after every step. The single matrix M is stored
as W_d [K, m, n]; there is no W_e and no b_d.
"""

from __future__ import annotations

from typing import Any

import torch

from sae_core.arch import ARCHS, StackedSAE, fold_decoder_norms
from sae_core.archs.unitnorm import renormalise_rows, unit_rows
from sae_core.recipes import COMMON_DEFAULTS, Recipe, register_recipe


class TiedSAE(StackedSAE):
    """Tied ReLU SAE: one dictionary M for encoding and decoding, bias on the encoder only."""

    arch = "tied"
    # SAELens has no tied architecture; the export is a "standard" SAE computing the same
    # function: W_enc = M^T (scaled), W_dec = M (scaled), b_dec = 0.
    saelens_architecture = "standard"

    @classmethod
    def export_tensors(cls, state, hp, scale_x, scale_y):
        """Untied copies of M plus a zero b_d, folded as the base class does."""
        M = state["W_d"]
        full = {"W_e": M.T.clone(), "b_e": state["b_e"], "W_d": M, "b_d": torch.zeros(M.shape[1], dtype=M.dtype)}
        return fold_decoder_norms(full, scale_x, scale_y)

    def init_params(self, seeds: list[int], transcoder: bool, sample_x: torch.Tensor | None) -> None:
        """M: random unit rows from each run's own generator (not given by the source); b = 0."""
        W_d = torch.empty(self.K, self.m, self.o)
        for k, seed in enumerate(seeds):
            W_d[k] = unit_rows((self.m, self.o), torch.Generator().manual_seed(int(seed)))
        self.params = {"W_d": W_d.to(self.device).requires_grad_(True),
                       "b_e": torch.zeros(self.K, self.m, device=self.device).requires_grad_(True)}

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """h = M x + b for every run: [B, K, m]."""
        return torch.einsum("bn,kmn->bkm", x, self.params["W_d"]) + self.params["b_e"]

    def activate(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(h)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """x_hat = M^T f (no decoder bias): [K, B, n]."""
        return torch.bmm(f.transpose(0, 1), self.params["W_d"])

    def _penalties(self, h, f, dec_norm):
        f_sum = f.sum(0)
        sparsity = f_sum.sum(-1) / f.shape[0]          # L1: mean over the batch of sum_i f_i
        return sparsity, torch.zeros_like(sparsity), f_sum

    def after_step(self) -> None:
        renormalise_rows(self.params["W_d"].data)


ARCHS[TiedSAE.arch] = TiedSAE

CUNNINGHAM_2023 = register_recipe(Recipe(
    name="cunningham-2023",
    arch=TiedSAE.arch,
    source=("seed 003 ('Sparse Autoencoder Architecture': bias on the encoder only, tied weights) and "
            "Cunningham et al. 2023, 'Sparse Autoencoders Find Highly Interpretable Features in Language Models'"),
    defaults={
        **COMMON_DEFAULTS,
        "lr": 1e-3,                    # saescale choice (no value in the seed)
        "lambda": 1.5,                 # saescale choice for the normalised synthetic problem
        "batch_size": 4096,            # saescale choice
        "lr_decay_frac": 0.0,          # no LR schedule in the source
        "lambda_warmup_frac": 0.0,     # no lambda warm-up in the source
        "grad_clip": 0.0,              # no gradient clipping in the source
    },
    notes=("Tied ReLU SAE, f = ReLU(M x + b), x_hat = M^T f, L = ||x - x_hat||^2 + lambda sum_i f_i; "
           "rows of M renormalised to unit norm after every step; no dead-feature resampling. "
           "FLOPs: the dense 4nm+6mo count (M is used twice, the same two GEMMs and three backward GEMMs). "
           "Exported as SAELens 'standard' (no tied architecture there) with b_dec = 0."),
))
