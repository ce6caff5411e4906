"""Dead-feature resampling (Bricken et al. 2023, "Neuron Resampling") for the recipes that use it.

`Resampling` is a mixin for StackedSAE subclasses (anthropic-2023-10; Gated as an option, since
seed 002 says the original Gated training resampled). A subclass gives `_row_loss` (the squared
reconstruction error per row) and names in RESAMPLE_ZEROED the per-feature parameters [K, m]
that a resampled feature resets to 0 (its encoder bias, and for Gated also b_mag and r_mag).
"""

from __future__ import annotations

from typing import Any

import torch

from sae_core.errors import UserError

RESAMPLE_ENCODER_SCALE = 0.2   # resampled encoder rows: 0.2 x mean norm of the alive encoder rows
RESAMPLE_CHUNK = 8192          # rows per chunk when computing the per-input loss for resampling
RESAMPLE_KEYS = ("resample_every", "resample_dead_steps", "resample_last_step", "resample_rows")
RESAMPLE_DEFAULTS = {               # Bricken et al.'s schedule (seed 003's anthropic-2023-10)
    "resample_every": 25000,       # resample at steps 25k, 50k, 75k, 100k (0 = off)
    "resample_last_step": 100000,  # no resampling after this step
    "resample_dead_steps": 12500,  # dead = no firing in the previous 12,500 steps
    "resample_rows": 819200,       # inputs scored (loss^2 weights) at each resampling
}


def validate_resample_hp(hp: dict[str, Any]) -> None:
    """UserError naming the field when a resampling hyperparameter is negative or inconsistent."""
    for key in RESAMPLE_KEYS:
        if hp[key] < 0:
            raise UserError(f"{key} must be >= 0, got {hp[key]}")
    if hp["resample_every"] > 0 and (hp["resample_rows"] <= 0 or hp["resample_dead_steps"] <= 0):
        raise UserError("resampling needs resample_rows > 0 and resample_dead_steps > 0")


class Resampling:
    """resample_due / resample_rows / resample hooks of the trainer (sae_core.arch.StackedSAE)."""

    RESAMPLE_ZEROED: tuple[str, ...] = ("b_e",)

    def init_params(self, seeds: list[int], transcoder: bool, sample_x: torch.Tensor | None) -> None:
        """Keep the runs' seeds (each resampling draws from its run's seed), then the base init."""
        self.seeds = [int(s) for s in seeds]
        super().init_params(seeds, transcoder, sample_x)

    def resample_due(self, done: int) -> bool:
        every = int(self.hp["resample_every"])
        return every > 0 and done % every == 0 and done <= int(self.hp["resample_last_step"])

    def resample_rows(self) -> int:
        return int(self.hp["resample_rows"])

    @torch.no_grad()
    def resample(self, done: int, sample_x: torch.Tensor, opt: Any, last_fired: torch.Tensor, tokens_seen: int) -> None:
        """Dead features (no firing in the last resample_dead_steps steps) get a new direction.

        Per run: the squared reconstruction loss of each sample input is its weight; each dead
        feature draws one input x; its decoder row becomes x/||x||, its encoder row
        x/||x|| * 0.2 * (mean encoder-row norm of the alive features), its RESAMPLE_ZEROED
        parameters 0, and the Adam moments of all of those are reset to 0.
        """
        window = min(int(self.hp["resample_dead_steps"]) * int(self.hp["batch_size"]), tokens_seen)
        dead = (tokens_seen - last_fired) >= window                         # [K, m]
        if not bool(dead.any()):
            return
        loss = torch.cat([self._row_loss(sample_x[i:i + RESAMPLE_CHUNK])
                          for i in range(0, sample_x.shape[0], RESAMPLE_CHUNK)], dim=1)   # [K, S]
        p = self.params
        enc_norm = p["W_e"].detach().norm(dim=0)                            # [K, m]
        for k in range(self.K):
            idx = dead[k].nonzero().flatten()
            if idx.numel() == 0:
                continue
            weights = loss[k].double().square().cpu()
            if not weights.sum() > 0:
                weights = torch.ones_like(weights)
            gen = torch.Generator().manual_seed(self.seeds[k] * 1_000_003 + done)
            picks = torch.multinomial(weights, idx.numel(), replacement=True, generator=gen).to(sample_x.device)
            chosen = sample_x[picks]
            unit = chosen / chosen.norm(dim=1, keepdim=True).clamp_min(1e-12)
            alive = ~dead[k]
            ref = enc_norm[k][alive].mean() if bool(alive.any()) else enc_norm[k].mean()
            p["W_d"].data[k, idx] = unit
            p["W_e"].data[:, k, idx] = (unit * (RESAMPLE_ENCODER_SCALE * ref)).T
            for name in self.RESAMPLE_ZEROED:
                p[name].data[k, idx] = 0.0
            for state in (opt.exp_avg, opt.exp_avg_sq):
                state["W_d"][k, idx] = 0.0
                state["W_e"][:, k, idx] = 0.0
                for name in self.RESAMPLE_ZEROED:
                    state[name][k, idx] = 0.0

    def _row_loss(self, x: torch.Tensor) -> torch.Tensor:
        """||x - x_hat||^2 per run and row: [K, rows]."""
        raise NotImplementedError
