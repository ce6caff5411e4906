"""The sweep spec: a pydantic-validated YAML file (unknown keys are errors).

`load_spec` turns a path, YAML text or dict into a `SweepSpec`; every problem becomes one
`UserError` line naming the field by its dotted path (`design.budgets.0: ...`). Nothing runs
before the spec, the recipe hyperparameters and the data source have been validated.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError,
                      field_validator, model_validator)

from sae_core.errors import UserError
from sae_core.config import stable_hash
from sae_core.recipes import get_recipe

_STRICT = ConfigDict(extra="forbid", populate_by_name=True)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


def _unique(values: list[Any]) -> list[Any]:
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"values must be distinct, repeated: {duplicates}")
    return values


T = TypeVar("T")
Axis = Annotated[list[T], Field(min_length=1), AfterValidator(_unique)]  # one axis: non-empty, distinct


class SyntheticSource(BaseModel):
    """Synthetic superposition data (sae_core.synthetic), generated once and cached."""

    model_config = _STRICT
    source: Literal["synthetic"]
    n: PositiveInt = 64
    true_features: PositiveInt = 512
    tokens: Annotated[int, Field(ge=2048)] = 1_000_000
    seed: Annotated[int, Field(ge=0)] = 0
    zipf_exponent: float = 1.0
    mean_active: PositiveFloat = 5.0
    magnitude_low: Annotated[float, Field(ge=0)] = 0.5
    magnitude_high: PositiveFloat = 1.5
    groups: Annotated[int, Field(ge=0)] = 0
    group_coupling: Annotated[float, Field(ge=0, le=1)] = 0.0
    noise_std: Annotated[float, Field(ge=0)] = 0.0
    cache_dir: str | None = None


class StoreSource(BaseModel):
    """An existing ActivationStore directory (e.g. from `saescale activations cache`)."""

    model_config = _STRICT
    source: Literal["store"]
    path: str
    n: PositiveInt | None = None


def _integral(v: Any) -> Any:
    """Accept 2e5 / "2e5" / 200000.0 for integer counts (YAML reads 1e6 as a string)."""
    if isinstance(v, (str, float)) and not isinstance(v, bool):
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if f.is_integer() else v
    return v


class LMSource(BaseModel):
    """Activations of a real model over text, cached by the driver on first use (sae_core.lm).

    The store goes to `out` (default: the cache dir, keyed by model, layer, site, text, tokens,
    seq_len and dtype); an interrupted cache resumes, a finished one is reused.
    """

    model_config = _STRICT
    source: Literal["lm"]
    model: str
    layer: PositiveInt
    site: Literal["resid", "mlp"] = "resid"
    text: Annotated[list[str], Field(min_length=1)]
    tokens: Annotated[int, Field(ge=2), BeforeValidator(_integral)]
    seq_len: PositiveInt = 128
    dtype: Literal["float32", "float16"] = "float32"
    batch_size: PositiveInt = 32     # caching batch (texts per forward pass), not the SAE's
    device: str = "cpu"
    out: str | None = None


Activations = Annotated[Union[SyntheticSource, StoreSource, LMSource], Field(discriminator="source")]


class GridDesign(BaseModel):
    """Every combination of features (m) and steps."""

    model_config = _STRICT
    kind: Literal["grid"]
    features: Axis[PositiveInt]
    steps: Axis[PositiveInt]


class IsoflopDesign(BaseModel):
    """Per budget C and feature count m: steps = round(C / FLOPs per step); infeasible points dropped."""

    model_config = _STRICT
    kind: Literal["isoflop"]
    budgets: Axis[PositiveFloat]
    features: Axis[PositiveInt]
    min_steps: PositiveInt = 1


Design = Annotated[Union[GridDesign, IsoflopDesign], Field(discriminator="kind")]


class OptunaLR(BaseModel):
    """Learning-rate search with Optuna (TPE, log-uniform in [low, high]) per design cell."""

    model_config = _STRICT
    search: Literal["optuna"]
    low: PositiveFloat
    high: PositiveFloat
    trials: PositiveInt
    parallel: PositiveInt | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    max_failed: PositiveInt | None = None

    @model_validator(mode="after")
    def _ordered(self) -> OptunaLR:
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got low={self.low}, high={self.high}")
        return self


def _lr_kind(value: Any) -> str:
    return "search" if isinstance(value, (dict, OptunaLR)) else "list"


LRAxis = Annotated[Union[Annotated[Axis[PositiveFloat], Tag("list")],
                         Annotated[OptunaLR, Tag("search")]], Discriminator(_lr_kind)]


class Resources(BaseModel):
    """Ray resources of ONE PACK task (a pack trains up to packing.max_runs runs at once)."""

    model_config = _STRICT
    cpus: PositiveFloat = 1.0
    gpus: Annotated[float, Field(ge=0)] = 0.0
    custom: dict[str, PositiveFloat] = {}

    @field_validator("gpus")
    @classmethod
    def _ray_gpu_rule(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"gpus above 1 must be a whole number (Ray's rule), got {v}")
        return v


class Packing(BaseModel):
    """How many same-shape runs are stacked into one module and one task."""

    model_config = _STRICT
    max_runs: PositiveInt = 8
    memory_gb: PositiveFloat = 2.0


class SweepSpec(BaseModel):
    """A whole sweep: data, recipe, design, LR/lambda/seed axes, resources, retries."""

    model_config = _STRICT
    name: str
    activations: Activations
    recipe: str = "anthropic-2024-04"
    batch_size: PositiveInt | None = None
    design: Design
    lr: LRAxis | None = None
    lam: Axis[Annotated[float, Field(ge=0)]] | None = Field(None, alias="lambda")
    k: Axis[PositiveInt] | None = None      # TopK recipes' sparsity axis (where others sweep lambda)
    seeds: Axis[Annotated[int, Field(ge=0)]] = [0]
    data_seed: Annotated[int, Field(ge=0)] = 0
    hparams: dict[str, Any] = {}
    eval_max_rows: PositiveInt | None = None
    downstream_windows: Annotated[int, Field(ge=0)] = 0   # lm data: CE / embedding recovered on N held-out windows
    resources: Resources = Resources()
    packing: Packing = Packing()
    retries: Annotated[int, Field(ge=0)] = 2
    checkpoint_every: Annotated[int, Field(ge=0)] = 1000
    optuna_storage: str | None = None

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"must be letters, digits, '_', '.', '-' (a directory name), got {v!r}")
        return v

    @field_validator("recipe")
    @classmethod
    def _recipe_known(cls, v: str) -> str:
        get_recipe(v)  # UserError listing the known recipes
        return v

    @field_validator("lr", "lam", "k", "seeds", mode="before")
    @classmethod
    def _scalar_to_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, (int, float, str)) and not isinstance(v, bool) else v

    @property
    def lr_search(self) -> OptunaLR | None:
        """The Optuna search settings, or None when lr is a list (a grid axis)."""
        return self.lr if isinstance(self.lr, OptunaLR) else None

    def identity(self) -> dict[str, Any]:
        """The fields that decide WHAT is computed (execution settings and search effort excluded)."""
        ident = self.model_dump(mode="json", by_alias=True, exclude=set(EXECUTION_FIELDS))
        for where in ("cache_dir", "out", "device", "batch_size"):   # where/how data is made, not what it is
            ident["activations"].pop(where, None)
        if ident.get("k") is None:   # specs without a k axis keep the hash they had before it existed
            ident.pop("k", None)
        if isinstance(ident["lr"], dict):
            ident["lr"] = {k: v for k, v in ident["lr"].items() if k not in SEARCH_EFFORT_FIELDS}
        return ident

    def spec_hash(self) -> str:
        """Hash of `identity()`: a results directory belongs to exactly one spec hash."""
        return stable_hash(self.identity())


# May change between reruns of one results directory without counting as a different spec.
EXECUTION_FIELDS = ("resources", "packing", "retries", "checkpoint_every")
# Likewise for the search effort: raising lr.trials and re-running continues each study.
SEARCH_EFFORT_FIELDS = ("trials", "parallel", "max_failed")

# Tags of the discriminated unions; pydantic puts them into error locations, we drop them.
_UNION_TAGS = {"activations": {"synthetic", "store", "lm"}, "design": {"grid", "isoflop"},
               "lr": {"list", "search"}}


def load_spec(spec: str | os.PathLike[str] | dict[str, Any] | SweepSpec) -> SweepSpec:
    """Parse and validate a spec from a path, a dict, or a SweepSpec (returned as is)."""
    if isinstance(spec, SweepSpec):
        return spec
    where = "spec"
    if isinstance(spec, dict):
        raw: Any = spec
    else:
        path = Path(spec)
        where = str(path)
        if not path.is_file():
            raise UserError(f"spec file not found: {path}")
        raw = parse_yaml(path.read_text(), where)
    if not isinstance(raw, dict):
        raise UserError(f"{where}: a sweep spec must be a YAML mapping, got {type(raw).__name__}")
    try:
        parsed = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{where}: {format_errors(exc)}") from None
    _check_hparams(parsed, where)
    return parsed


def parse_yaml(text: str, where: str) -> Any:
    """YAML text to Python; a syntax error becomes one line with its position."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{where}: invalid YAML{pos}: {problem}") from None


def format_errors(exc: ValidationError) -> str:
    """All validation errors on one line: `field.path: message; ...`."""
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        if len(loc) > 1 and loc[1] in _UNION_TAGS.get(loc[0], ()):
            loc.pop(1)
        field = ".".join(loc) or "spec"
        ctx = err.get("ctx") or {}
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field missing"
        elif err["type"] == "union_tag_not_found":
            field, msg = f"{field}.{str(ctx.get('discriminator', '')).strip(chr(39))}", "required field missing"
        elif err["type"] == "union_tag_invalid":
            field = f"{field}.{str(ctx.get('discriminator', '')).strip(chr(39))}"
            msg = f"must be one of {ctx.get('expected_tags')} (got {ctx.get('tag')!r})"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            value = err.get("input")
            if isinstance(value, (str, int, float, bool)) and "got" not in msg:
                msg += f" (got {value!r})"
        parts.append(f"{field}: {msg}")
    # A non-discriminated union (lr) reports one error per alternative; keep distinct lines.
    return "; ".join(dict.fromkeys(parts))


def _check_k_axis(spec: SweepSpec, defaults: Any, where: str) -> None:
    """k is swept only for recipes with a k (TopK), and those do not sweep lambda."""
    if "k" not in defaults:
        if spec.k is not None:
            raise UserError(f"{where}: k: recipe {spec.recipe} has no hyperparameter k (sweep lambda instead)")
        return
    if spec.lam is not None:
        raise UserError(f"{where}: lambda: recipe {spec.recipe} has no sparsity coefficient; sweep k instead")
    if "k" in spec.hparams:
        raise UserError(f"{where}: hparams.k: set it with the top-level `k` field")


def _check_hparams(spec: SweepSpec, where: str) -> None:
    """Recipe hyperparameter overrides are validated against the recipe now, not in a task."""
    recipe = get_recipe(spec.recipe)
    for key in ("lr", "lambda", "batch_size"):
        if key in spec.hparams:
            raise UserError(f"{where}: hparams.{key}: set it with the top-level `{key}` field")
    _check_k_axis(spec, recipe.defaults, where)
    try:
        recipe.resolve(spec.hparams)
    except UserError as exc:
        raise UserError(f"{where}: hparams: {exc}") from None
