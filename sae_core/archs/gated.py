"""`deepmind-2024-gated`: Gated SAE (Rajamanoharan et al. 2024) with seed 002's variant as an option.

x_c = x - b_d;  z = x_c W_gate  (W_gate is W_e)
pi_gate = z + b_gate,  pi_mag = exp(r_mag) * z + b_mag       (r_mag weight sharing: W_mag = exp(r_mag) W_gate)
f = 1[pi_gate > 0] * ReLU(pi_mag);  x_hat = f W_d + b_d
L = ||x - x_hat||^2 + lambda * S + ||x - (ReLU(pi_gate) sg(W_d) + sg(b_d))||^2      (sg: frozen copy)
sparsity_penalty = "l1" (the paper):  S = sum_i ReLU(pi_gate)_i, decoder rows kept at unit norm
(parallel gradient projected out, renormalised after each step).
sparsity_penalty = "decoder_norm" (seed 002): S = sum_i ReLU(pi_gate)_i ||W_d,i||, no norm
constraint, and `decoder_freeze` picks how the decoder is treated consistently: "both"
(frozen in the penalty's norms, frozen in the aux task) or "none" (unfrozen in both).
"""

from __future__ import annotations

from typing import Any

import torch

from sae_core.arch import ARCHS, RUN_DIMS, StackedSAE, fold_decoder_norms
from sae_core.archs.resampling import RESAMPLE_DEFAULTS, Resampling, validate_resample_hp
from sae_core.archs.unitnorm import project_out_parallel, renormalise_rows, unit_rows
from sae_core.errors import UserError
from sae_core.flops import gated_flops_per_token
from sae_core.recipes import COMMON_DEFAULTS, Recipe, register_recipe

RUN_DIMS.update({"b_mag": 0, "r_mag": 0})


class GatedSAE(Resampling, StackedSAE):
    """Gate and magnitude paths sharing W_gate (b_e is b_gate); auxiliary task on the gate path.

    Optional dead-latent resampling (off by default): a resampled latent gets a new decoder row and
    gate direction and b_gate = b_mag = r_mag = 0, so its magnitude path starts equal to its gate.
    """

    arch = "gated"
    saelens_architecture = "gated"
    RESAMPLE_ZEROED = ("b_e", "b_mag", "r_mag")

    @classmethod
    def validate_hp(cls, hp: dict[str, Any]) -> None:
        if hp["sparsity_penalty"] not in ("l1", "decoder_norm"):
            raise UserError(f"sparsity_penalty must be 'l1' or 'decoder_norm', got {hp['sparsity_penalty']!r}")
        if hp["decoder_freeze"] not in ("both", "none"):
            raise UserError(f"decoder_freeze must be 'both' or 'none', got {hp['decoder_freeze']!r}")
        validate_resample_hp(hp)

    @classmethod
    def flops(cls, n: int, m: int, o: int, hp: dict[str, Any]) -> tuple[int, str]:
        """The auxiliary decoder pass adds GEMMs (sae_core.flops.gated_flops_per_token)."""
        return gated_flops_per_token(n, m, o, aux_decoder_grad=cls._aux_unfrozen(hp))

    @staticmethod
    def _aux_unfrozen(hp: dict[str, Any]) -> bool:
        return hp["sparsity_penalty"] == "decoder_norm" and hp["decoder_freeze"] == "none"

    @classmethod
    def export_tensors(cls, state, hp, scale_x, scale_y):
        """SAELens gated names; centring folded into both biases, decoder norms into W_enc, b_gate, b_mag.

        Scaling W_gate's column i and both biases by s_i > 0 keeps the gate's sign and scales the
        magnitude by s_i (r_mag unchanged), so f_i s_i with decoder row W_d,i / s_i predicts the same.
        """
        W, b_d = state["W_e"].double(), state["b_d"].double()
        shift = b_d @ W
        r = state["r_mag"].double()
        base = fold_decoder_norms({"W_e": state["W_e"], "b_e": (state["b_e"].double() - shift).float(),
                                   "W_d": state["W_d"], "b_d": state["b_d"]}, scale_x, scale_y)
        s = (state["W_d"].double() / scale_y).norm(dim=1)
        s = torch.where(s > 0, s, torch.ones_like(s))
        b_mag = (state["b_mag"].double() - r.exp() * shift) * s
        return {"W_enc": base["W_enc"], "b_gate": base["b_enc"], "r_mag": state["r_mag"].float().contiguous(),
                "b_mag": b_mag.float().contiguous(), "W_dec": base["W_dec"], "b_dec": base["b_dec"]}

    def _init_run(self, gen: torch.Generator, transcoder: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # W_d: random unit rows; W_gate = W_d^T at initialisation only (seed 002's PS, from Anthropic).
        W_d = unit_rows((self.m, self.o), gen)
        return W_d, W_d.T.clone()

    def _extra_params(self) -> dict[str, torch.Tensor]:
        return {"b_mag": torch.zeros(self.K, self.m), "r_mag": torch.zeros(self.K, self.m)}

    def _gate_mag(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pi_gate, pi_mag), each [B, K, m], from the one GEMM z = (x - b_d) W_gate."""
        p = self.params
        KM = self.K * self.m
        z = (x @ p["W_e"].reshape(self.n, KM)).view(x.shape[0], self.K, self.m)
        z = z - torch.einsum("kn,nkm->km", p["b_d"], p["W_e"])
        return z + p["b_e"], z * p["r_mag"].exp() + p["b_mag"]

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """The gate pre-activation pi_gate (the quantity whose sign decides which features fire)."""
        return self._gate_mag(x)[0]

    def activate(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("the gated activation needs both paths; see _terms_tuple")

    def _terms_tuple(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p = self.params
        gate, mag = self._gate_mag(x)
        f = (gate > 0).to(mag.dtype) * torch.relu(mag)
        y_hat = self.decode(f)
        mse = (y_hat - y.unsqueeze(0)).pow(2).sum(-1).mean(-1)
        f_gate = torch.relu(gate)
        aux_unfrozen = self._aux_unfrozen(self.hp)
        W_d = p["W_d"] if aux_unfrozen else p["W_d"].detach()
        b_d = p["b_d"] if aux_unfrozen else p["b_d"].detach()
        y_aux = torch.baddbmm(b_d.unsqueeze(1), f_gate.transpose(0, 1), W_d)
        aux = (y_aux - y.unsqueeze(0)).pow(2).sum(-1).mean(-1)
        if self.hp["sparsity_penalty"] == "l1":
            sparsity = f_gate.sum(-1).mean(0)
        else:
            norms = self.decoder_norms()
            norms = norms if aux_unfrozen else norms.detach()
            sparsity = (f_gate * norms).sum(-1).mean(0)
        return mse, sparsity, aux, f.detach().sum(0), f, y_hat

    def _row_loss(self, x: torch.Tensor) -> torch.Tensor:
        """||x - x_hat||^2 per run and row: [K, rows] (for resampling)."""
        return (self._terms_tuple(x, x)[5] - x.unsqueeze(0)).pow(2).sum(-1)

    def _unit_norm(self) -> bool:
        return self.hp["sparsity_penalty"] == "l1"

    def adjust_grads(self) -> None:
        if self._unit_norm():
            project_out_parallel(self.params["W_d"].grad, self.params["W_d"].detach())

    def after_step(self) -> None:
        if self._unit_norm():
            renormalise_rows(self.params["W_d"].data)


ARCHS[GatedSAE.arch] = GatedSAE

DEEPMIND_2024_GATED = register_recipe(Recipe(
    name="deepmind-2024-gated",
    arch=GatedSAE.arch,
    source=("Rajamanoharan et al. 2024, 'Improving Dictionary Learning with Gated Sparse Autoencoders' "
            "(section 3.2, the gated encoder and loss); seed 002 (the auxiliary task with a frozen decoder; "
            "the decoder-norm penalty variant and its two decoder treatments; W_e = W_d^T init and lambda warm-up)"),
    defaults={
        **COMMON_DEFAULTS,
        "lr": 3e-4,                    # "learning rate 0.0003 for all Gated SAE experiments" (authors, LessWrong post)
        "lambda": 4.0,                 # saescale choice for the normalised synthetic problem
        "batch_size": 4096,            # saescale choice (the same as seed 004's)
        "lr_decay_frac": 0.0,          # no LR schedule in the sources
        "lambda_warmup_frac": 0.05,    # seed 002 recommends warming lambda up; the span is seed 004's 5%
        "grad_clip": 0.0,              # no gradient clipping in the sources
        "sparsity_penalty": "l1",      # "l1": the paper (unit-norm decoder); "decoder_norm": seed 002's variant
        "decoder_freeze": "both",   # decoder_norm variant: frozen in penalty and aux ("both") or in neither ("none")
        # Dead-latent resampling as Bricken et al. (seed 002: the original Gated training resampled; the
        # seeds give no schedule for it, so it is off by default; the other three are Bricken's values)
        **RESAMPLE_DEFAULTS,
        "resample_every": 0,
    },
    notes=("Gated SAE: f = 1[pi_gate > 0] ReLU(pi_mag), pi_gate = W_gate (x - b_d) + b_gate, "
           "pi_mag = exp(r_mag) W_gate (x - b_d) + b_mag; L = ||x - x_hat||^2 + lambda ||ReLU(pi_gate)||_1 "
           "+ ||x - x_hat_frozen(ReLU(pi_gate))||^2, unit-norm decoder rows. Option sparsity_penalty="
           "decoder_norm: lambda sum_i ReLU(pi_gate)_i ||W_d,i||, no norm constraint. Option resample_every > 0: "
           "dead latents resampled as in anthropic-2023-10 (b_gate, b_mag, r_mag reset to 0). FLOPs: "
           "sae-gated-4nm+10mo (12mo with decoder_freeze=none)."),
))
