"""Export a trained run in SAELens 6's on-disk layout, predictions unchanged.

Each architecture folds its own weights (StackedSAE.export_tensors): the normalisation scale
into raw units, and the decoder norms into the encoder (seeds 004/000), so every decoder row
has norm 1 and predictions are unchanged. The files are SAELens 6's: `sae_weights.safetensors`
(W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_out], b_dec, plus threshold / b_gate, b_mag, r_mag
as the architecture has them) and `cfg.json` (architecture, d_in, d_sae, dtype, device,
apply_b_dec_to_input, normalize_activations, reshape_activations, the architecture's own fields
from its export_config hook (TopK's k), and `metadata` with sae_lens_version, model_name, hook_name, and
hook_name_out for transcoders). saescale's provenance is the extra `saescale` key, which
SAELens ignores. `ENCODERS` maps a SAELens architecture name to its raw-unit encoder, the
formula SAELens itself uses, so `load_sae` needs no SAELens.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

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


# The SAELens on-disk layout written: every SAELens >= 6.0 reads it as is (older exports lacking
# metadata.sae_lens_version take SAELens's pre-6.0 conversion path).
SAELENS_VERSION = "6.0.0"

def saelens_metadata(source: Mapping[str, Any], transcoder: bool) -> dict[str, Any]:
    """SAELens 6 `metadata`: the model and hook the store was read at, named even without a model.

    A store not read from a language model (synthetic, test) has model `saescale-<kind>` and
    hooks "input" (and "output" for a transcoder's targets).
    """
    meta: dict[str, Any] = {
        "sae_lens_version": SAELENS_VERSION,
        "model_name": source.get("model") or f"saescale-{source.get('kind', 'unknown')}",
        "hook_name": source.get("hook_name") or "input",
    }
    if transcoder:
        meta["hook_name_out"] = source.get("hook_name_out") or "output"
    if source.get("seq_len"):
        meta["context_size"] = int(source["seq_len"])
    return meta


def saelens_config(run: ResolvedRun, store: ActivationStore) -> dict[str, Any]:
    """cfg.json of `run` trained on `store`, in SAELens 6's layout (see the module docstring)."""
    arch = ARCHS[run.recipe.arch].saelens_architecture
    transcoder = store.meta.has_targets
    return {
        "architecture": f"{arch}_transcoder" if transcoder else arch,
        "d_in": store.n, "d_sae": run.m, "d_out": store.o,
        "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": False,         # any input centring is folded into b_enc
        "normalize_activations": "none",       # the scale is folded into the weights
        "reshape_activations": "none",
        **ARCHS[run.recipe.arch].export_config(dict(run.hp)),
        "metadata": saelens_metadata(store.meta.source, transcoder),
    }


def export_sae(state: dict[str, torch.Tensor], run: ResolvedRun, store: ActivationStore, out: str | os.PathLike[str]) -> Path:
    """Write `out/sae_weights.safetensors` and `out/cfg.json` for one trained run."""
    cfg = saelens_config(run, store)    # before any file is written: a missing hyperparameter fails here
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    normalize = bool(run.hp["normalize"])
    sx = store.meta.norm_scale if normalize else 1.0
    sy = store.meta.target_norm_scale if normalize else 1.0
    save_file(fold_weights(state, sx, sy, run.recipe.arch, dict(run.hp)), str(out / WEIGHTS_FILE))
    cfg["saescale"] = {
        "recipe": run.recipe.name, "config": run.to_dict(), "store_hash": store.content_hash,
        "source_kind": store.meta.source.get("kind"), "hook_layer": store.meta.source.get("layer"),
        "norm_scale_folded": sx, "target_norm_scale_folded": sy, "decoder_norms_folded": True,
    }
    (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=1, default=str))
    return out


def _relu_encode(w: dict[str, torch.Tensor], cfg: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x @ w["W_enc"] + w["b_enc"])


def _jumprelu_encode(w: dict[str, torch.Tensor], cfg: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    h = x @ w["W_enc"] + w["b_enc"]
    return h * (h > w["threshold"])


def _gated_encode(w: dict[str, torch.Tensor], cfg: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    """Gate path decides which features fire; the magnitude path shares W_enc rescaled by exp(r_mag)."""
    gate = (x @ w["W_enc"] + w["b_gate"] > 0).to(x.dtype)
    return gate * torch.relu(x @ (w["W_enc"] * w["r_mag"].exp()) + w["b_mag"])


def _topk_encode(w: dict[str, torch.Tensor], cfg: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    """The k largest pre-activations of each row, through a ReLU; the others zero."""
    h = x @ w["W_enc"] + w["b_enc"]
    values, indices = torch.topk(h, k=int(cfg["k"]), dim=-1, sorted=False)
    return torch.zeros_like(h).scatter_(-1, indices, values.relu())


# SAELens architecture name -> encoder of an export in raw units (weights, cfg, x) -> f, each the
# formula of SAELens's own class of that name.
ENCODERS: dict[str, Callable[[dict[str, torch.Tensor], dict[str, Any], torch.Tensor], torch.Tensor]] = {
    "standard": _relu_encode, "jumprelu": _jumprelu_encode, "gated": _gated_encode, "topk": _topk_encode,
}


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
        """Reconstruction (or transcoder prediction) in raw units from feature activations f."""
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
