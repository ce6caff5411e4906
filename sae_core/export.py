"""Export a trained run as safetensors + a JSON config, predictions unchanged.

Each architecture folds its own weights (StackedSAE.export_tensors): the normalisation scale
into raw units, and the decoder norms into the encoder (seeds 004/000), so every decoder row
has norm 1 and predictions are unchanged. `ENCODERS` maps the SAELens architecture name of an
export to its raw-unit encoder.
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

from sae_core.errors import UserError
from sae_core.arch import ARCHS
from sae_core.config import ResolvedRun
from sae_core.store import ActivationStore

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"


def fold_weights(state: dict[str, torch.Tensor], scale_x: float, scale_y: float, arch: str,
                 hp: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Raw-unit, SAELens-named weights of one run of architecture `arch` (see StackedSAE.export_tensors)."""
    return ARCHS[arch].export_tensors(state, dict(hp), scale_x, scale_y)


def export_sae(state: dict[str, torch.Tensor], run: ResolvedRun, store: ActivationStore, out: str | os.PathLike[str]) -> Path:
    """Write `out/sae_weights.safetensors` and `out/cfg.json` for one trained run."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    normalize = bool(run.hp["normalize"])
    sx = store.meta.norm_scale if normalize else 1.0
    sy = store.meta.target_norm_scale if normalize else 1.0
    weights = fold_weights(state, sx, sy, run.recipe.arch, dict(run.hp))
    save_file(weights, str(out / WEIGHTS_FILE))
    source = store.meta.source
    transcoder = store.meta.has_targets
    arch = ARCHS[run.recipe.arch].saelens_architecture
    cfg: dict[str, Any] = {
        "architecture": f"{arch}_transcoder" if transcoder else arch,
        "d_in": store.n, "d_sae": run.m, "d_out": store.o,
        "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",      # the scale is folded into the weights
        "model_name": source.get("model"), "hook_name": source.get("hook_name"),
        "hook_layer": source.get("layer"),
        **ARCHS[run.recipe.arch].export_config(dict(run.hp)),
        "saescale": {
            "recipe": run.recipe.name, "config": run.to_dict(), "store_hash": store.content_hash,
            "norm_scale_folded": sx, "target_norm_scale_folded": sy, "decoder_norms_folded": True,
        },
    }
    (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=1, default=str))
    return out


def _relu_encode(w: dict[str, torch.Tensor], cfg: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x @ w["W_enc"] + w["b_enc"])


def _jumprelu_encode(w: dict[str, torch.Tensor], cfg: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    h = x @ w["W_enc"] + w["b_enc"]
    return h * (h > w["threshold"])


def _topk_encode(w: dict[str, torch.Tensor], cfg: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    h = x @ w["W_enc"] + w["b_enc"]
    vals, idx = h.topk(int(cfg["k"]), dim=-1)
    return torch.zeros_like(h).scatter(-1, idx, torch.relu(vals))


# SAELens architecture name -> encoder of an export in raw units (weights, cfg, x) -> f.
ENCODERS: dict[str, Any] = {"standard": _relu_encode, "jumprelu": _jumprelu_encode, "topk": _topk_encode}


@dataclass
class ExportedSAE:
    """An exported SAE for inference in raw activation units."""

    weights: dict[str, torch.Tensor]
    config: dict[str, Any]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations of raw inputs x, by the encoder of the export's architecture."""
        arch = str(self.config.get("architecture", "standard")).removesuffix("_transcoder")
        try:
            encoder = ENCODERS[arch]
        except KeyError:
            raise UserError(f"exported SAE: unknown architecture {arch!r} (known: {', '.join(sorted(ENCODERS))})") from None
        return encoder(self.weights, self.config, x)

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
