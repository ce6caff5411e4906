"""TopK (Gao et al. 2024) and BatchTopK (Bussmann et al. 2024) SAEs, stacked, and their recipes.

Both: h = (x - b_d) W_e + b_e (b_d is Gao's b_pre, shared by encoder and decoder), a fixed
number of active latents instead of a sparsity penalty, x_hat = f W_d + b_d, loss
L = ||x - x_hat||^2 + auxk_coef * ||e - e_hat||^2 (AuxK, below). Decoder rows stay unit norm:
the gradient's component along each row is projected out before the step (adjust_grads) and
rows are renormalised after it (after_step). lambda is unused (sparsity term 0) and must be 0.
- TopK: f = ReLU(TopK_k(h)) per row, so eval L0 = k whenever the k-th largest h is positive.
- BatchTopK: in training, the k*B largest ReLU(h) of the whole batch [B, m]; at inference
  f = h * (h > theta) with theta an EMA over training batches of the smallest positive
  selected activation.
- AuxK: dead latents (not fired in dead_window_tokens tokens) reconstruct the detached error
  e = x - x_hat: e_hat = ReLU(TopK_{k_aux}(h over dead latents)) W_d (no bias); 0 without dead.
Each run of a pack has its own k (a per-run key, like lr and lambda).
"""

from __future__ import annotations

from typing import Any

import torch

from sae_core.arch import ARCHS, StackedSAE, Terms, fold_decoder_norms
from sae_core.archs.unitnorm import project_out_parallel, renormalise_rows, unit_rows
from sae_core.errors import UserError
from sae_core.recipes import COMMON_DEFAULTS, Recipe, register_recipe

THRESHOLD = "threshold"   # BatchTopK inference threshold [K] (a buffer: no gradient, not optimised)


def _positive_int(hp: dict[str, Any], key: str) -> None:
    value = hp[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{key} must be a positive integer, got {value!r}")


def topk_per_row(h: torch.Tensor, ks: list[int]) -> torch.Tensor:
    """ReLU of the k_r largest entries of each row of run r (h [B, K, m]); the rest 0."""
    kmax = max(ks)
    vals, idx = h.topk(kmax, dim=-1)                       # sorted: rank j < k_r keeps
    vals = torch.relu(vals)
    if min(ks) != kmax:
        keep = torch.arange(kmax, device=h.device) < torch.tensor(ks, device=h.device).unsqueeze(1)
        vals = vals * keep
    return torch.zeros_like(h).scatter(-1, idx, vals)


def topk_per_batch(h: torch.Tensor, ks: list[int]) -> torch.Tensor:
    """ReLU of the k_r * B largest entries of run r's whole batch (h [B, K, m]); the rest 0."""
    B, K, m = h.shape
    flat = h.transpose(0, 1).reshape(K, B * m)
    kmax = max(ks) * B
    vals, idx = flat.topk(kmax, dim=-1)
    vals = torch.relu(vals)
    if min(ks) * B != kmax:
        keep = torch.arange(kmax, device=h.device) < (torch.tensor(ks, device=h.device) * B).unsqueeze(1)
        vals = vals * keep
    return torch.zeros_like(flat).scatter(-1, idx, vals).view(K, B, m).transpose(0, 1)


class TopKSAE(StackedSAE):
    """Gao et al. 2024 TopK SAE with AuxK, b_pre input centring and a unit-norm decoder."""

    arch = "topk"
    saelens_architecture = "topk"
    buffers: dict[str, torch.Tensor]

    def __init__(self, K: int, n: int, o: int, m: int, hp: dict[str, Any], device: torch.device | str = "cpu",
                 run_hps: list[dict[str, Any]] | None = None):
        super().__init__(K, n, o, m, hp, device, run_hps)
        self.ks = [int(h["k"]) for h in self.run_hps]
        for h in self.run_hps:
            self.validate_shape(h, m)
        self.dead = torch.zeros(K, m, dtype=torch.bool, device=self.device)   # set by before_step
        self.training = False
        self.buffers = {}

    @classmethod
    def validate_hp(cls, hp: dict[str, Any]) -> None:
        _positive_int(hp, "k")
        _positive_int(hp, "k_aux")
        rows = hp["b_pre_init_rows"]
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise UserError(f"b_pre_init_rows must be a non-negative integer, got {rows!r}")
        if not hp["auxk_coef"] >= 0:
            raise UserError(f"auxk_coef must be >= 0, got {hp['auxk_coef']}")
        if hp["lambda"] != 0:
            raise UserError(f"lambda must be 0 for recipe arch {cls.arch}: sparsity is set by k (got lambda={hp['lambda']})")

    @classmethod
    def validate_shape(cls, hp: dict[str, Any], m: int) -> None:
        if hp["k"] > m:
            raise UserError(f"k must be <= m (the number of features), got k={hp['k']} > m={m}")

    @classmethod
    def data_sample_rows(cls, hp: dict[str, Any]) -> int:
        return int(hp["b_pre_init_rows"])

    @classmethod
    def export_config(cls, hp: dict[str, Any]) -> dict[str, Any]:
        return {"k": int(hp["k"]), "rescale_acts_by_decoder_norm": False}

    @classmethod
    def export_tensors(cls, state: dict[str, torch.Tensor], hp: dict[str, Any], scale_x: float,
                       scale_y: float) -> dict[str, torch.Tensor]:
        """b_pre folded into the encoder bias (b_e - b_d W_e), then folded as the base class.

        Decoder rows are unit norm, so every latent is scaled alike and the top-k is unchanged.
        """
        folded = {"W_e": state["W_e"], "W_d": state["W_d"], "b_d": state["b_d"],
                  "b_e": (state["b_e"].double() - state["b_d"].double() @ state["W_e"].double()).float()}
        return fold_decoder_norms(folded, scale_x, scale_y)

    # -- initialisation (Gao et al. 2024, section 2.4 and appendix A.1) --------------------
    def _init_run(self, gen: torch.Generator, transcoder: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder rows uniformly random unit directions; the encoder their transpose."""
        W_d = unit_rows((self.m, self.o), gen)
        return W_d, W_d.T.clone()

    @torch.no_grad()
    def _init_from_data(self, sample_x: torch.Tensor) -> None:
        """b_pre (= b_d) = the sample mean (the paper: the geometric median)."""
        self.params["b_d"].copy_(sample_x.double().mean(0).float().expand(self.K, -1))

    # -- forward -----------------------------------------------------------------------------
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """h = (x - b_d) W_e + b_e = x W_e + (b_e - b_d W_e): one GEMM plus a per-run bias."""
        h = super().pre_acts(x)
        return h - torch.einsum("ko,okm->km", self.params["b_d"], self.params["W_e"])

    def select(self, h: torch.Tensor) -> torch.Tensor:
        """The active latents f from pre-activations h [B, K, m]."""
        return topk_per_row(h, self.ks)

    def before_step(self, since_fired: torch.Tensor) -> None:
        self.dead = since_fired >= int(self.hp["dead_window_tokens"])

    def train_terms(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        """Loss terms with the training-time selection (BatchTopK: over the batch)."""
        self.training = True
        try:
            return self.terms(x, y)
        finally:
            self.training = False

    def _terms_tuple(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.pre_acts(x)
        f = self.select(h)
        y_hat = self.decode(f)
        mse = (y_hat - y.unsqueeze(0)).pow(2).sum(-1).mean(-1)
        aux = self.auxk(h, (y.unsqueeze(0) - y_hat).detach())
        return mse, torch.zeros_like(mse), aux, f.detach().sum(0), f, y_hat

    def auxk(self, h: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
        """auxk_coef * ||e - e_hat||^2 per run [K], e_hat from the top-k_aux dead latents; 0 without dead."""
        has_dead = self.dead.any(-1)
        if not bool(has_dead.any()):
            return torch.zeros(self.K, device=h.device, dtype=err.dtype)
        k_aux = min(int(self.hp["k_aux"]), self.m)
        vals, idx = h.masked_fill(~self.dead.unsqueeze(0), float("-inf")).topk(k_aux, dim=-1)
        z = torch.zeros_like(h).scatter(-1, idx, torch.relu(vals))   # ReLU(-inf) = 0: live latents drop out
        e_hat = torch.bmm(z.transpose(0, 1), self.params["W_d"])
        l_aux = (err - e_hat).pow(2).sum(-1).mean(-1)
        return self.hp["auxk_coef"] * torch.where(has_dead, l_aux, torch.zeros_like(l_aux))

    # -- unit-norm decoder -------------------------------------------------------------------
    @torch.no_grad()
    def adjust_grads(self) -> None:
        project_out_parallel(self.params["W_d"].grad, self.params["W_d"].detach())

    @torch.no_grad()
    def after_step(self) -> None:
        renormalise_rows(self.params["W_d"].data)

    # -- buffers travel with a run's state (checkpoints, exports) -----------------------------
    def run_state(self, k: int) -> dict[str, torch.Tensor]:
        return {**super().run_state(k), **{n: b.select(0, k).clone() for n, b in self.buffers.items()}}

    @torch.no_grad()
    def load_run(self, k: int, state: dict[str, torch.Tensor]) -> None:
        super().load_run(k, state)
        for name, b in self.buffers.items():
            b.select(0, k).copy_(state[name])

    @torch.no_grad()
    def reset_run(self, k: int) -> None:
        super().reset_run(k)
        for b in self.buffers.values():
            b.select(0, k).zero_()


class BatchTopKSAE(TopKSAE):
    """Bussmann et al. 2024: top k*B over the batch in training, a JumpReLU threshold at inference."""

    arch = "batchtopk"
    saelens_architecture = "jumprelu"   # SAELens saves BatchTopK SAEs for inference as JumpReLU

    def __init__(self, K: int, n: int, o: int, m: int, hp: dict[str, Any], device: torch.device | str = "cpu",
                 run_hps: list[dict[str, Any]] | None = None):
        super().__init__(K, n, o, m, hp, device, run_hps)
        self.buffers = {THRESHOLD: torch.zeros(K, device=self.device)}   # 0 until the first batch

    @classmethod
    def validate_hp(cls, hp: dict[str, Any]) -> None:
        super().validate_hp(hp)
        if not 0 < hp["threshold_ema_rate"] <= 1:
            raise UserError(f"threshold_ema_rate must be in (0, 1], got {hp['threshold_ema_rate']}")

    @classmethod
    def export_config(cls, hp: dict[str, Any]) -> dict[str, Any]:
        return {}

    @classmethod
    def export_tensors(cls, state: dict[str, torch.Tensor], hp: dict[str, Any], scale_x: float,
                       scale_y: float) -> dict[str, torch.Tensor]:
        """As TopK, plus SAELens's per-latent JumpReLU threshold: theta times the folded scale."""
        out = super().export_tensors(state, hp, scale_x, scale_y)
        s = state["W_d"].double().div(scale_y).norm(dim=1)
        s = torch.where(s > 0, s, torch.ones_like(s))
        out["threshold"] = (state[THRESHOLD].double() * s).float().contiguous()
        return out

    def select(self, h: torch.Tensor) -> torch.Tensor:
        if self.training:
            return topk_per_batch(h, self.ks)
        theta = self.buffers[THRESHOLD].view(1, self.K, 1)
        return h * (h > theta)

    def train_terms(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        """Training loss terms; the batch also updates the inference threshold."""
        terms = super().train_terms(x, y)
        self.update_threshold(terms.f)
        return terms

    @torch.no_grad()
    def update_threshold(self, f: torch.Tensor) -> None:
        """theta <- theta + rate (min positive f of the batch - theta); the first batch sets it."""
        low = f.detach().masked_fill(f <= 0, float("inf")).amin(dim=(0, 2))   # [K]
        theta = self.buffers[THRESHOLD]
        rate = float(self.hp["threshold_ema_rate"])
        new = torch.where(theta > 0, theta + rate * (low - theta), low)
        theta.copy_(torch.where(torch.isfinite(low), new, theta))


ARCHS["topk"] = TopKSAE
ARCHS["batchtopk"] = BatchTopKSAE

# Shared by both recipes (Gao et al. 2024; Bussmann et al. 2024 section 3 keep Gao's AuxK).
_TOPK_COMMON: dict[str, Any] = {
    **COMMON_DEFAULTS,
    "lambda": 0.0,                 # unused: sparsity is set by k (must stay 0)
    "lambda_warmup_frac": 0.0,     # unused (no sparsity term)
    "k": 32,                       # active latents per token (Gao's main setting; BatchTopK: on average)
    "k_aux": 512,                  # AuxK: dead latents used to model the error (Gao A.2)
    "auxk_coef": 1 / 32,           # alpha of L + alpha L_aux (Gao A.2)
    "dead_window_tokens": 10_000_000,   # dead = not fired in 10M tokens (Gao A.2)
    "b_pre_init_rows": 32768,      # sample for the b_pre init (the mean; 0: b_pre starts at 0)
    "grad_clip": 0.0,              # no gradient clipping
    "lr_decay_frac": 0.0,          # constant learning rate
}

_NOTES = ("L = ||x - x_hat||^2 + auxk_coef ||e - e_hat||^2 (both sum over dims, mean over the batch, as the "
          "paper's A.2 writes them; OpenAI's code normalises each by its own variance); lambda unused (must be 0; sweep k). "
          "b_pre init: the sample mean, not the geometric median. FLOPs: the dense count "
          "sae-dense-4nm+6mo, because training uses dense matmuls (the AuxK decode, only with dead latents, "
          "is not counted; the paper puts it at ~10%).")

OPENAI_2024_TOPK = register_recipe(Recipe(
    name="openai-2024-topk",
    arch="topk",
    source=("Gao et al. 2024, 'Scaling and evaluating sparse autoencoders' (arXiv 2406.04093): TopK section 2.3, "
            "dead latents / AuxK section 2.4 and appendix A.2, init appendix A.1, optimiser appendix A"),
    defaults={
        **_TOPK_COMMON,
        "lr": 2e-4,                # the m^-1/2 LR law, 2e-4 at m = 2^14 (Gao section 3)
        "batch_size": 131072,      # tokens per batch
        "adam_eps": 6.25e-10,      # Adam epsilon of the paper / released code
    },
    notes=("TopK SAE: f = ReLU(TopK_k((x - b_pre) W_e + b_e)), x_hat = f W_d + b_pre; W_e = W_d^T at init, "
           "unit-norm decoder rows with gradient projection. L0 = k on every token with at least k positive "
           "pre-activations (the ReLU, as in OpenAI's code and SAELens, zeroes the others). " + _NOTES),
))

BATCHTOPK_2024 = register_recipe(Recipe(
    name="batchtopk-2024",
    arch="batchtopk",
    source=("Bussmann, Leask, Nanda 2024, 'BatchTopK Sparse Autoencoders' (arXiv 2412.06410): BatchTopK and the "
            "inference threshold section 3, training setup section 4; AuxK and init from Gao et al. 2024"),
    defaults={
        **_TOPK_COMMON,
        "lr": 3e-4,
        "batch_size": 4096,
        "threshold_ema_rate": 0.01,   # theta's EMA rate over batches (the paper: an average; SAELens: 0.01)
    },
    notes=("BatchTopK SAE: training keeps the k*B largest ReLU((x - b_pre) W_e + b_e) of the batch; inference "
           "f = h 1[h > theta], theta the EMA of each batch's smallest kept activation (exported as SAELens "
           "jumprelu). " + _NOTES),
))
