"""Stacked SAE architectures: K runs of one recipe and shape held in single tensors.

Layout (K runs, n inputs, o outputs, m features):
  W_e [n, K, m]   encoder; viewed as [n, K*m] the encoder of all runs is one GEMM x @ W_e
  b_e [K, m]
  W_d [K, m, o]   decoder rows are features (the seeds' columns of W_d)
  b_d [K, o]
  log_threshold [K, m]   JumpReLU only, always fp32
A single run is K = 1. Every run draws its initial weights from its own generator, so a run
starts identically alone or inside a pack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from sae_core.errors import UserError
from sae_core.flops import FLOPS_CONVENTION, flops_per_token
from sae_core.fused import jumprelu_sae_loss, relu_sae_loss
from sae_core.jumprelu import jumprelu

RUN_DIMS = {"W_e": 1, "b_e": 0, "W_d": 0, "b_d": 0, "log_threshold": 0}


@dataclass
class Terms:
    """Per-run batch means [K] of the loss terms, plus the batch's per-feature activation sums."""

    mse: torch.Tensor
    sparsity: torch.Tensor       # unweighted; the loss adds lambda_t * sparsity
    aux: torch.Tensor            # already weighted (pre-act loss); 0 for ReLU
    f_sum: torch.Tensor          # [K, m] sum over the batch of f (>= 0): > 0 means the feature fired
    f: torch.Tensor | None = None        # [B, K, m] (evaluation only)
    y_hat: torch.Tensor | None = None    # [K, B, o] (evaluation only)

    def total(self, lam: torch.Tensor) -> torch.Tensor:
        """Per-run objective [K] at sparsity coefficients `lam` [K]."""
        return self.mse + lam * self.sparsity + self.aux


class StackedSAE:
    """Parameters and forward pass of K stacked SAEs of one architecture.

    An architecture is a subclass registered in ARCHS. Besides the forward pass and the loss
    terms it may override these hooks, which the trainer and the exporter call:
      validate_hp(hp)            reject bad recipe hyperparameters (UserError naming the key)
      validate_shape(hp, m)      reject hyperparameters that do not fit m features
      data_sample_rows(hp)       rows of training data its initialisation needs (0: none)
      before_step(since_fired)   before each training forward: tokens since each feature fired [K, m]
      adjust_grads()             after backward, before clipping (e.g. project decoder gradients)
      after_step()               after the optimiser step (e.g. renormalise decoder rows)
      export_tensors(...)        raw-unit, SAELens-named tensors of one run's state
      flops(n, m, o, hp)         training FLOPs per token and the convention's name (dense default)
      resample_due(done), resample_rows(), resample(...)   dead-feature resampling (none by default)
      export_config(hp)          extra cfg.json fields of an export (e.g. TopK's k)
    and it names the SAELens architecture of its export in `saelens_architecture`.
    """

    arch = "base"
    saelens_architecture = "standard"

    def __init__(self, K: int, n: int, o: int, m: int, hp: dict[str, Any], device: torch.device | str = "cpu",
                 run_hps: list[dict[str, Any]] | None = None):
        self.K, self.n, self.o, self.m = K, n, o, m
        self.hp = hp
        self.run_hps = list(run_hps) if run_hps is not None else [hp] * K  # per-run keys (e.g. TopK's k)
        self.device = torch.device(device)
        self.params: dict[str, torch.Tensor] = {}
        self._terms_fn = self._terms_tuple
        self.compiled = False
        self._workspace: dict[str, torch.Tensor] = {}   # reused activation buffers (sae_core.fused)

    # -- recipe-level hooks ---------------------------------------------------------------
    @classmethod
    def validate_hp(cls, hp: dict[str, Any]) -> None:
        """Raise UserError for hyperparameters this architecture cannot use (none by default)."""

    @classmethod
    def validate_shape(cls, hp: dict[str, Any], m: int) -> None:
        """Raise UserError for hyperparameters that do not fit m features (none by default)."""

    @classmethod
    def data_sample_rows(cls, hp: dict[str, Any]) -> int:
        """Rows of (normalised) training data `init_params` needs as `sample_x`; 0 for none."""
        return 0

    def before_step(self, since_fired: torch.Tensor) -> None:
        """Before each training forward, see the tokens since each feature last fired [K, m] (unused by default)."""

    def adjust_grads(self) -> None:
        """Change gradients after backward and before clipping (nothing by default)."""

    def after_step(self) -> None:
        """Act on the parameters after each optimiser step (nothing by default)."""

    @classmethod
    def flops(cls, n: int, m: int, o: int, hp: dict[str, Any]) -> tuple[int, str]:
        """Training FLOPs per token and the name of the convention counting them (dense by default)."""
        return flops_per_token(n, m, o), FLOPS_CONVENTION

    def resample_due(self, done: int) -> bool:
        """Whether the trainer calls `resample` after step `done` (never by default)."""
        return False

    def resample_rows(self) -> int:
        """Rows of (normalised) training data `resample` is given."""
        return 0

    def resample(self, done: int, sample_x: torch.Tensor, opt: Any, last_fired: torch.Tensor, tokens_seen: int) -> None:
        """Re-initialise dead features after step `done` (nothing by default).

        `last_fired` [K, m] holds the token count at each feature's last firing; `opt` is the
        trainer's StackedAdam, whose state for re-initialised weights may be reset.
        """

    @classmethod
    def export_tensors(cls, state: dict[str, torch.Tensor], hp: dict[str, Any], scale_x: float,
                       scale_y: float) -> dict[str, torch.Tensor]:
        """One run's weights in raw units with unit-norm decoder rows, SAELens names (W_enc, ...)."""
        return fold_decoder_norms(state, scale_x, scale_y)

    @classmethod
    def export_config(cls, hp: dict[str, Any]) -> dict[str, Any]:
        """Extra cfg.json fields of an export (none by default)."""
        return {}

    # -- construction ---------------------------------------------------------------------
    def init_params(self, seeds: list[int], transcoder: bool, sample_x: torch.Tensor | None) -> None:
        """Draw each run's initial weights from torch.Generator(seed) (on CPU, then moved)."""
        K, n, o, m = self.K, self.n, self.o, self.m
        W_e = torch.empty(n, K, m)
        W_d = torch.empty(K, m, o)
        for k, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(int(seed))
            W_d[k], W_e[:, k, :] = self._init_run(gen, transcoder)
        self.params = {
            "W_e": W_e, "b_e": torch.zeros(K, m), "W_d": W_d, "b_d": torch.zeros(K, o),
            **self._extra_params(),
        }
        self.params = {k: v.to(self.device).requires_grad_(True) for k, v in self.params.items()}
        if sample_x is not None:
            self._init_from_data(sample_x.to(self.device))

    def _init_run(self, gen: torch.Generator, transcoder: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _extra_params(self) -> dict[str, torch.Tensor]:
        return {}

    def _init_from_data(self, sample_x: torch.Tensor) -> None:
        """Data-dependent initialisation (none by default)."""

    # -- forward --------------------------------------------------------------------------
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """h = x W_e + b_e for every run: [B, K, m] from one GEMM with the bias in its epilogue."""
        KM = self.K * self.m
        h = torch.addmm(self.params["b_e"].reshape(KM), x, self.params["W_e"].reshape(self.n, KM))
        return h.view(x.shape[0], self.K, self.m)

    def activate(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """y_hat = f W_d + b_d: [K, B, o] by a batched GEMM over runs."""
        return torch.baddbmm(self.params["b_d"].unsqueeze(1), f.transpose(0, 1), self.params["W_d"])

    def decoder_norms(self) -> torch.Tensor:
        """||W_d,i||_2 per run and feature: [K, m]."""
        return self.params["W_d"].norm(dim=-1)

    def terms(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        """Loss terms on a batch (x [B, n], targets y [B, o]) for every run."""
        mse, sparsity, aux, f_sum, f, y_hat = self._terms_fn(x, y)
        return Terms(mse=mse, sparsity=sparsity, aux=aux, f_sum=f_sum, f=f, y_hat=y_hat)

    def train_terms(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        """Loss terms for a training step (no activations kept for the caller)."""
        return self.terms(x, y)

    def _terms_tuple(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.pre_acts(x)
        f = self.activate(h)
        y_hat = self.decode(f)
        mse = (y_hat - y.unsqueeze(0)).pow(2).sum(-1).mean(-1)
        sparsity, aux, f_sum = self._penalties(h, f, self.decoder_norms())
        return mse, sparsity, aux, f_sum.detach(), f, y_hat

    def compile(self) -> None:
        """Run the forward and loss through torch.compile (the backward is compiled with it)."""
        self._terms_fn = torch.compile(self._terms_tuple, dynamic=False)
        self.compiled = True

    def _penalties(self, h: torch.Tensor, f: torch.Tensor,
                   dec_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sparsity [K], weighted aux loss [K], batch sum of f [K, m])."""
        raise NotImplementedError

    # -- bookkeeping ----------------------------------------------------------------------
    def run_state(self, k: int) -> dict[str, torch.Tensor]:
        """Run k's parameters as standalone tensors (for its checkpoint or export)."""
        return {name: p.detach().select(RUN_DIMS[name], k).clone() for name, p in self.params.items()}

    @torch.no_grad()
    def load_run(self, k: int, state: dict[str, torch.Tensor]) -> None:
        for name, p in self.params.items():
            p.select(RUN_DIMS[name], k).copy_(state[name])

    @torch.no_grad()
    def reset_run(self, k: int) -> None:
        """Zero run k's parameters (after it diverged) so NaNs cannot reach its metrics."""
        for name, p in self.params.items():
            p.select(RUN_DIMS[name], k).zero_()


class ReluSAE(StackedSAE):
    """Seed 004: f = ReLU(W_e x + b_e), penalty sum_i f_i ||W_d,i||."""

    arch = "relu"

    def _init_run(self, gen: torch.Generator, transcoder: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # "columns point in random directions and have fixed L2 norm"; "W_e is initialized to W_d^T".
        W_d = torch.randn(self.m, self.o, generator=gen)
        W_d = W_d / W_d.norm(dim=-1, keepdim=True) * self.hp["decoder_init_norm"]
        return W_d, W_d.T.clone()

    def activate(self, h: torch.Tensor) -> torch.Tensor:
        return torch.relu_(h)  # h is a fresh GEMM output that nothing else keeps

    def train_terms(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        """The fused forward/backward (sae_core.fused) unless compiled or under bf16 autocast."""
        if self.compiled or self.hp["precision"] == "bf16":
            return self.terms(x, y)
        p = self.params
        mse, sparsity, f_sum = relu_sae_loss(x, y, p["W_e"], p["b_e"], p["W_d"], p["b_d"], self._workspace)
        return Terms(mse=mse, sparsity=sparsity, aux=torch.zeros_like(sparsity), f_sum=f_sum)

    def _penalties(self, h, f, dec_norm):
        f_sum = f.sum(0)
        sparsity = (f_sum * dec_norm).sum(-1) / f.shape[0]
        return sparsity, torch.zeros_like(sparsity), f_sum


class JumpReluSAE(StackedSAE):
    """Seed 000: JumpReLU with tanh sparsity and pre-act loss; transcoders when y != x."""

    arch = "jumprelu"
    saelens_architecture = "jumprelu"

    @classmethod
    def validate_hp(cls, hp: dict[str, Any]) -> None:
        if hp["preact_on"] not in ("h", "f"):
            raise UserError(f"preact_on must be 'h' or 'f', got {hp['preact_on']!r}")
        if not hp["bandwidth"] > 0:
            raise UserError(f"bandwidth must be > 0, got {hp['bandwidth']}")
        rows = hp["b_e_init_rows"]
        if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
            raise UserError(f"b_e_init_rows must be a positive integer, got {rows!r}")

    @classmethod
    def data_sample_rows(cls, hp: dict[str, Any]) -> int:
        return int(hp["b_e_init_rows"])

    @classmethod
    def export_tensors(cls, state, hp, scale_x, scale_y):
        """Folded as the base class; the threshold exp(t) scales with the decoder norm."""
        s = state["W_d"].double().div(scale_y).norm(dim=1)
        s = torch.where(s > 0, s, torch.ones_like(s))
        out = super().export_tensors(state, hp, scale_x, scale_y)
        out["threshold"] = (state["log_threshold"].double().exp() * s).float().contiguous()
        return out

    def _init_run(self, gen: torch.Generator, transcoder: bool) -> tuple[torch.Tensor, torch.Tensor]:
        n, o, m = self.n, self.o, self.m
        a = 1.0 / math.sqrt(n)
        W_d = torch.rand(m, o, generator=gen) * (2 * a) - a           # U(-1/sqrt(n), 1/sqrt(n))
        if transcoder:
            b = 1.0 / math.sqrt(m)
            W_e = torch.rand(n, m, generator=gen) * (2 * b) - b       # U(-1/sqrt(m), 1/sqrt(m))
        else:
            W_e = (n / m) * W_d.T.clone()                              # (n/m) W_d^T
        return W_d, W_e

    def _extra_params(self) -> dict[str, torch.Tensor]:
        return {"log_threshold": torch.full((self.K, self.m), float(self.hp["log_threshold_init"]), dtype=torch.float32)}

    @torch.no_grad()
    def _init_from_data(self, sample_x: torch.Tensor) -> None:
        """b_e so each feature fires on a fraction min(1, target/m) of the sample (seed 000)."""
        self.params["b_e"].copy_(init_b_e(
            sample_x, self.params["W_e"], self.params["log_threshold"].exp(),
            min(1.0, self.hp["b_e_target_fires"] / self.m),
        ))

    def activate(self, h: torch.Tensor) -> torch.Tensor:
        return jumprelu(h, self.params["log_threshold"], self.hp["bandwidth"])

    def train_terms(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        """The fused forward/backward (sae_core.fused) unless compiled or under bf16 autocast."""
        if self.compiled or self.hp["precision"] == "bf16":
            return self.terms(x, y)
        p, hp = self.params, self.hp
        mse, sparsity, aux, f_sum = jumprelu_sae_loss(
            x, y, p["W_e"], p["b_e"], p["W_d"], p["b_d"], p["log_threshold"], tanh_c=hp["tanh_c"],
            bandwidth=hp["bandwidth"], lambda_p=hp["lambda_p"], preact_on=hp["preact_on"], workspace=self._workspace)
        return Terms(mse=mse, sparsity=sparsity, aux=aux, f_sum=f_sum)

    def _penalties(self, h, f, dec_norm):
        c = self.hp["tanh_c"]
        sparsity = torch.tanh(c * f * dec_norm).sum(-1).mean(0)
        below = h if self.hp["preact_on"] == "h" else f
        aux = self.hp["lambda_p"] * (torch.relu(self.params["log_threshold"].exp() - below) * dec_norm).sum(-1).mean(0)
        return sparsity, aux, f.detach().sum(0)


def init_b_e(sample_x: torch.Tensor, W_e: torch.Tensor, threshold: torch.Tensor, frac: float,
             chunk: int = 4096) -> torch.Tensor:
    """Per run and feature, the bias that makes x W_e + b_e > threshold on `frac` of the sample.

    The crossing is placed midway between the order statistics around the (1 - frac) quantile,
    so exactly round(frac * S) of the S sample rows fire. Works in feature chunks to bound memory.
    """
    S = sample_x.shape[0]
    n_below = S - round(frac * S)
    _, K, m = W_e.shape
    b_e = torch.empty(K, m, device=W_e.device)
    for k in range(K):
        for lo in range(0, m, chunk):
            hi = min(m, lo + chunk)
            pre = sample_x @ W_e[:, k, lo:hi]
            srt = pre.sort(dim=0).values
            gap = 1e-3 * (srt[-1] - srt[0]) + 1e-6
            below = srt[n_below - 1] if n_below > 0 else srt[0] - gap
            above = srt[n_below] if n_below < S else srt[-1] + gap
            b_e[k, lo:hi] = threshold[k, lo:hi] - 0.5 * (below + above)
    return b_e


def fold_decoder_norms(state: dict[str, torch.Tensor], scale_x: float, scale_y: float) -> dict[str, torch.Tensor]:
    """Raw-unit weights with unit-norm decoder rows from a run's normalised-space state.

    Training saw c_x x and predicted c_y y, so in raw units W_enc = c_x W_e, W_dec = W_d / c_y,
    b_dec = b_d / c_y; then with s_i = ||W_dec,i||: W_enc[:, i] *= s_i, b_enc_i *= s_i,
    W_dec,i /= s_i (features become f_i s_i, the seeds' "conceptual" activations).
    """
    W_enc = state["W_e"].double() * scale_x
    b_enc = state["b_e"].double().clone()
    W_dec = state["W_d"].double() / scale_y
    b_dec = state["b_d"].double() / scale_y
    s = W_dec.norm(dim=1)
    s = torch.where(s > 0, s, torch.ones_like(s))  # an all-zero decoder row contributes nothing
    out = {"W_enc": W_enc * s, "b_enc": b_enc * s, "W_dec": W_dec / s.unsqueeze(1), "b_dec": b_dec}
    return {k: v.float().contiguous() for k, v in out.items()}


ARCHS: dict[str, type[StackedSAE]] = {"relu": ReluSAE, "jumprelu": JumpReluSAE}
