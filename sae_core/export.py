"""Export a trained run as safetensors + a JSON config, predictions unchanged.

Two foldings, both exact:
1. the normalisation scale: training saw c_x x and predicted c_y y, so in raw units
   W_enc = c_x W_e and W_dec = W_d / c_y, b_dec = b_d / c_y (b_e and thresholds unchanged);
2. decoder norms (seeds 004/000): with s_i = ||W_dec,i||, W_enc[:, i] *= s_i, b_enc_i *= s_i,
   threshold_i *= s_i, W_dec,i /= s_i; feature activations become f_i s_i, the seeds'
   "conceptual" activation, and every decoder row has norm 1.
Tensor names and config fields follow SAELens where they mean the same thing (W_enc [d_in,
d_sae], b_enc, W_dec [d_sae, d_out], b_dec, threshold; cfg.json d_in, d_sae, architecture,
apply_b_dec_to_input, normalize_activations, dtype, device, model_name, hook_name).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from saescale.errors import UserError
from sae_core.config import ResolvedRun
from sae_core.store import ActivationStore

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"


def fold_weights(state: dict[str, torch.Tensor], scale_x: float, scale_y: float) -> dict[str, torch.Tensor]:
    """Raw-unit weights with unit-norm decoder rows from a run's normalised-space state."""
    W_enc = state["W_e"].double() * scale_x
    b_enc = state["b_e"].double().clone()
    W_dec = state["W_d"].double() / scale_y
    b_dec = state["b_d"].double() / scale_y
    s = W_dec.norm(dim=1)
    s = torch.where(s > 0, s, torch.ones_like(s))  # an all-zero decoder row contributes nothing
    out = {"W_enc": W_enc * s, "b_enc": b_enc * s, "W_dec": W_dec / s.unsqueeze(1), "b_dec": b_dec}
    if "log_threshold" in state:
        out["threshold"] = state["log_threshold"].double().exp() * s
    return {k: v.float().contiguous() for k, v in out.items()}


def export_sae(state: dict[str, torch.Tensor], run: ResolvedRun, store: ActivationStore, out: str | os.PathLike[str]) -> Path:
    """Write `out/sae_weights.safetensors` and `out/cfg.json` for one trained run."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    normalize = bool(run.hp["normalize"])
    sx = store.meta.norm_scale if normalize else 1.0
    sy = store.meta.target_norm_scale if normalize else 1.0
    weights = fold_weights(state, sx, sy)
    save_file(weights, str(out / WEIGHTS_FILE))
    source = store.meta.source
    transcoder = store.meta.has_targets
    arch = {"relu": "standard", "jumprelu": "jumprelu"}[run.recipe.arch]
    cfg: dict[str, Any] = {
        "architecture": f"{arch}_transcoder" if transcoder else arch,
        "d_in": store.n, "d_sae": run.m, "d_out": store.o,
        "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",      # the scale is folded into the weights
        "model_name": source.get("model"), "hook_name": source.get("hook_name"),
        "hook_layer": source.get("layer"),
        "saescale": {
            "recipe": run.recipe.name, "config": run.to_dict(), "store_hash": store.content_hash,
            "norm_scale_folded": sx, "target_norm_scale_folded": sy, "decoder_norms_folded": True,
        },
    }
    (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=1, default=str))
    return out


@dataclass
class ExportedSAE:
    """An exported SAE for inference in raw activation units."""

    weights: dict[str, torch.Tensor]
    config: dict[str, Any]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.weights["W_enc"] + self.weights["b_enc"]
        if "threshold" in self.weights:
            return h * (h > self.weights["threshold"])
        return torch.relu(h)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.weights["W_dec"] + self.weights["b_dec"]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def load_sae(path: str | os.PathLike[str]) -> ExportedSAE:
    """Load an export written by `export_sae`."""
    path = Path(path)
    try:
        weights = load_file(str(path / WEIGHTS_FILE))
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read exported SAE at {path}: {exc}") from None
    return ExportedSAE(weights=weights, config=config)
