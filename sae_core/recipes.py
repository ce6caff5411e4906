"""Recipe registry: a recipe is an architecture plus every default the source document gives.

Each default can be overridden per run (RunConfig.hparams, `--set key=value`, a sweep spec's
`hparams:`). Unknown keys are errors. To add a recipe (Gated, TopK, tied), add an
architecture in sae_core.arch and register a Recipe naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sae_core.errors import UserError

# Hyperparameters every recipe has (values differ per recipe).
COMMON_DEFAULTS: dict[str, Any] = {
    "lr": 5e-5,
    "lambda": 5.0,
    "batch_size": 4096,
    "lr_decay_frac": 0.2,        # LR decays linearly to 0 over the last 20% of steps
    "lambda_warmup_frac": 0.05,  # lambda ramps 0 -> final over this fraction of steps
    "grad_clip": 1.0,            # clip_grad_norm max norm (<= 0 disables)
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_eps": 1e-8,            # the seeds do not give eps; torch's default
    "normalize": True,           # scale inputs so E||c x||_2 = sqrt(n)
    "dead_window_tokens": 10_000_000,  # dead = no firing in the last min(this, tokens seen) tokens
    # fp32 | tf32 (CUDA matmuls in TF32) | bf16 (matmuls under bf16 autocast; parameters, Adam
    # state and JumpReLU thresholds stay fp32). Part of a run's identity: it changes the numbers.
    "precision": "fp32",
}


@dataclass(frozen=True)
class Recipe:
    """A named training recipe: architecture, defaults, and where they come from."""

    name: str
    arch: str
    source: str
    defaults: Mapping[str, Any]
    supports_transcoder: bool = False
    notes: str = ""

    def resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated by `overrides`, type-checked; unknown keys raise UserError."""
        hp = dict(self.defaults)
        for key, value in overrides.items():
            if key not in hp:
                raise UserError(f"unknown hyperparameter {key!r} for recipe {self.name} (known: {', '.join(sorted(hp))})")
            hp[key] = _coerce(key, value, hp[key])
        return hp


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Cast `value` to the type of the default, naming the key on failure."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                return value.lower() in {"true", "1", "yes"}
            return bool(value)
        if isinstance(default, int):
            f = float(value)
            if f != int(f):
                raise ValueError(value)
            return int(f)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UserError(f"hyperparameter {key!r} must be a {type(default).__name__}, got {value!r}") from None


_RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    """Add a recipe to the registry (names are unique)."""
    if recipe.name in _RECIPES:
        raise ValueError(f"recipe {recipe.name} already registered")
    _RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    """The registered recipe `name`, or a UserError listing the known ones."""
    try:
        return _RECIPES[name]
    except KeyError:
        raise UserError(f"unknown recipe {name!r} (known: {', '.join(sorted(_RECIPES))})") from None


def recipe_names() -> list[str]:
    return sorted(_RECIPES)


ANTHROPIC_2024_04 = register_recipe(Recipe(
    name="anthropic-2024-04",
    arch="relu",
    source="seed 004: Anthropic, 'Update on how we train SAEs' (April 2024)",
    defaults={
        **COMMON_DEFAULTS,
        "lr": 5e-5,
        "lambda": 5.0,
        "batch_size": 4096,            # "2048 or 4096"
        "lambda_warmup_frac": 0.05,    # "over the first 5% of training steps"
        "decoder_init_norm": 0.1,      # columns of W_d: random directions, norm 0.05..1 ("0.1 is likely reasonable")
    },
    notes="ReLU SAE, L = ||x - x_hat||^2 + lambda sum_i f_i ||W_d,i||; W_e = W_d^T at init; b_e = b_d = 0.",
))

ANTHROPIC_2025_02 = register_recipe(Recipe(
    name="anthropic-2025-02",
    arch="jumprelu",
    source="seed 000: Anthropic interpretability team, Feb-2025 update on training SAEs and crosscoders",
    defaults={
        **COMMON_DEFAULTS,
        "lr": 2e-4,
        "lambda": 20.0,                # lambda_S; "a reasonable default ... is 20" ("around 10" also reported)
        "batch_size": 32768,
        "lambda_warmup_frac": 1.0,     # "We warmup lambda_S linearly over the entire duration of training"
        "tanh_c": 4.0,                 # c
        "bandwidth": 2.0,              # epsilon of the rectangle kernel
        "lambda_p": 3e-6,              # pre-act loss coefficient (not warmed up)
        "preact_on": "h",              # pre-act loss on the pre-activation h (default) or on f (as literally written)
        "log_threshold_init": 0.1,     # "t is initialized to 0.1" (t is the log threshold)
        "b_e_target_fires": 10000.0,   # b_e init: each feature fires min(1, 10000/m) of the time
        "b_e_init_rows": 8192,         # size of the data sample for the b_e init
    },
    supports_transcoder=True,
    notes=("JumpReLU SAE/transcoder, L = ||y - y_hat||^2 + lambda_S sum tanh(c |f_i| ||W_d,i||) "
           "+ lambda_P sum ReLU(exp(t_i) - h_i) ||W_d,i||; straight-through gradients to all parameters."),
))

from sae_core.archs import gated, monosemanticity, tied, topk  # noqa: E402,F401  registers recipes
