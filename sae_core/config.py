"""RunConfig: what one training run is, and its fully resolved form.

A run is (recipe, m, steps, batch_size, lr, lambda, seed, data_seed, hyperparameter overrides)
on a given activation store. `resolve()` fills every recipe default and validates, so the
resolved dict is the run's complete identity (sweeps hash it into run_id). Runs whose
resolved configs agree on everything but (lr, lambda, seed, TopK's k) share a *pack key*: they can be
trained together as one stacked module on one data stream.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from sae_core.errors import UserError
from sae_core.arch import ARCHS
from sae_core.recipes import Recipe, get_recipe

# Keys that may differ inside a pack: each stacked run has its own.
PER_RUN_KEYS = ("lr", "lambda", "seed", "k")  # k: TopK recipes' sparsity


@dataclass(frozen=True)
class RunConfig:
    """User-facing description of one run; None means "the recipe's default"."""

    recipe: str
    m: int
    steps: int
    batch_size: int | None = None
    lr: float | None = None
    lam: float | None = None
    seed: int = 0
    data_seed: int = 0
    hparams: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self) -> ResolvedRun:
        """Fill recipe defaults and validate every field; raise UserError naming the field."""
        recipe = get_recipe(self.recipe)
        overrides = dict(self.hparams)
        for key, value in (("lr", self.lr), ("lambda", self.lam), ("batch_size", self.batch_size)):
            if key in overrides and value is not None:
                raise UserError(f"{key} given twice (as a field and in hparams)")
            if value is not None:
                overrides[key] = value
        hp = recipe.resolve(overrides)
        _positive_int("m", self.m)
        _positive_int("steps", self.steps)
        _positive_int("batch_size", hp["batch_size"])
        if not hp["lr"] > 0:
            raise UserError(f"lr must be > 0, got {hp['lr']}")
        if not hp["lambda"] >= 0:
            raise UserError(f"lambda must be >= 0, got {hp['lambda']}")
        for key in ("lr_decay_frac", "lambda_warmup_frac"):
            if not 0 <= hp[key] <= 1:
                raise UserError(f"{key} must be in [0, 1], got {hp[key]}")
        if hp["precision"] not in ("fp32", "tf32", "bf16"):
            raise UserError(f"precision must be fp32, tf32 or bf16, got {hp['precision']!r}")
        ARCHS[recipe.arch].validate_hp(hp)
        ARCHS[recipe.arch].validate_shape(hp, int(self.m))
        for key in ("seed", "data_seed"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UserError(f"{key} must be a non-negative integer, got {value!r}")
        return ResolvedRun(recipe=recipe, m=int(self.m), steps=int(self.steps), seed=self.seed,
                           data_seed=self.data_seed, hp=hp)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ResolvedRun:
    """A validated run with every hyperparameter explicit."""

    recipe: Recipe
    m: int
    steps: int
    seed: int
    data_seed: int
    hp: Mapping[str, Any]

    @property
    def batch_size(self) -> int:
        return int(self.hp["batch_size"])

    @property
    def lr(self) -> float:
        return float(self.hp["lr"])

    @property
    def lam(self) -> float:
        return float(self.hp["lambda"])

    def flops_per_token(self, n: int, o: int, m: int | None = None) -> tuple[int, str]:
        """Training FLOPs per token at m features (default: this run's) and the name of the recipe's convention.

        Every FLOP count (planned cells, IsoFLOP steps, trained and failed rows) goes through the
        architecture's `flops` hook, so a recipe with its own convention (Gated) is counted alike everywhere.
        """
        return ARCHS[self.recipe.arch].flops(n, self.m if m is None else m, o, dict(self.hp))

    def to_dict(self) -> dict[str, Any]:
        """Flat identity: recipe, arch, m, steps, seed, data_seed and every hyperparameter."""
        return {"recipe": self.recipe.name, "arch": self.recipe.arch, "m": self.m, "steps": self.steps,
                "seed": self.seed, "data_seed": self.data_seed, **dict(self.hp)}

    def pack_key(self) -> str:
        """Hash of everything except the per-run keys: equal keys can share a stacked pack."""
        d = {k: v for k, v in self.to_dict().items() if k not in PER_RUN_KEYS}
        return stable_hash(d)

    def key(self, store_hash: str = "") -> str:
        """Hash of the full resolved config and the data identity (checkpoint names, run ids)."""
        return stable_hash({**self.to_dict(), "store_hash": store_hash})


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short sha256 of a JSON-canonical form of `obj` (sorted keys; floats by repr)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
