"""The sweep spec: a pydantic-validated YAML file (unknown keys are errors).

`load_spec` turns a path, YAML text or dict into a `SweepSpec`; every problem becomes one
`UserError` line naming the field by its dotted path (`design.budgets.0: ...`). Nothing runs
before the spec, the recipe hyperparameters and the data source have been validated.

Types are strict: counts are integers (a bool is refused; an integral float or a numeric string
such as YAML's `1e6` is accepted), every number is finite (`.inf`, `.nan`, `1e400` are refused,
in `hparams` too), and a YAML mapping with a repeated key is refused instead of the last one
silently winning.
"""

from __future__ import annotations

import math
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

_STRICT = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_INT = 2**62   # larger counts overflow int64 in numpy/torch


def _count(v: Any) -> Any:
    """A strict integer: an int, an integral float or numeric string (YAML reads 1e6 as a string); never a bool."""
    if isinstance(v, bool):
        raise ValueError(f"must be an integer, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, (str, float)):
        try:
            f = float(v)
        except ValueError:
            raise ValueError(f"must be an integer, got {v!r}") from None
        if not math.isfinite(f) or not f.is_integer():
            raise ValueError(f"must be a finite integer, got {v!r}")
        return int(f)
    raise ValueError(f"must be an integer, got {type(v).__name__}")


def _real(v: Any) -> Any:
    """A strict finite number: an int, a float or a numeric string (YAML reads 1e-3 as a string); never a bool."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"must be a number, got {v!r}")
    try:
        f = float(v)
    except (ValueError, OverflowError):
        raise ValueError(f"must be a number, got {v!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"must be a finite number, got {v!r}")
    return f


PositiveInt = Annotated[int, BeforeValidator(_count), Field(gt=0, le=MAX_INT)]
NonNegInt = Annotated[int, BeforeValidator(_count), Field(ge=0, le=MAX_INT)]
Real = Annotated[float, BeforeValidator(_real)]
PositiveFloat = Annotated[float, BeforeValidator(_real), Field(gt=0)]
NonNegFloat = Annotated[float, BeforeValidator(_real), Field(ge=0)]


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
    tokens: Annotated[int, BeforeValidator(_count), Field(ge=2048, le=MAX_INT)] = 1_000_000
    seed: NonNegInt = 0
    zipf_exponent: Real = 1.0
    mean_active: PositiveFloat = 5.0
    magnitude_low: NonNegFloat = 0.5
    magnitude_high: PositiveFloat = 1.5
    groups: NonNegInt = 0
    group_coupling: Annotated[float, BeforeValidator(_real), Field(ge=0, le=1)] = 0.0
    noise_std: NonNegFloat = 0.0
    cache_dir: str | None = None


class StoreSource(BaseModel):
    """An existing ActivationStore directory (e.g. from `saescale activations cache`)."""

    model_config = _STRICT
    source: Literal["store"]
    path: str
    n: PositiveInt | None = None


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
    tokens: Annotated[int, BeforeValidator(_count), Field(ge=2, le=MAX_INT)]
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


class OptimumDesign(BaseModel):
    """Stage design: one cell per budget at the compute-optimal m*(C), S*(C) fitted by earlier stages."""

    model_config = _STRICT
    kind: Literal["optimum"]
    budgets: Axis[PositiveFloat]


class ValidateDesign(BaseModel):
    """Stage design: the recommendation at `factor` x the largest budget trained so far, with its
    IsoFLOP neighbours (m*/2, 2m*) and LR neighbours (eta*/2, 2 eta*)."""

    model_config = _STRICT
    kind: Literal["validate"]
    factor: Annotated[float, Field(gt=1)] = 10.0


class DesignPoint(BaseModel):
    """One explicit design point (a derived stage's plan is frozen as a list of these)."""

    model_config = _STRICT
    features: PositiveInt
    steps: PositiveInt
    budget: PositiveFloat | None = None
    lr: PositiveFloat | None = None      # this point's LR; None: the spec's lr axis or search
    role: Literal["", "center", "m_half", "m_double", "lr_half", "lr_double"] = ""
    lr_start: PositiveFloat | None = None  # where a bracket search of this point starts (a frozen `start: law`)


class PointsDesign(BaseModel):
    """Explicit design points (the frozen form of an `optimum` or `validate` stage)."""

    model_config = _STRICT
    kind: Literal["points"]
    points: Annotated[list[DesignPoint], Field(min_length=1)]


Design = Annotated[Union[GridDesign, IsoflopDesign, OptimumDesign, ValidateDesign, PointsDesign],
                   Field(discriminator="kind")]
DERIVED_DESIGNS = ("optimum", "validate")   # kinds whose points come from the laws of earlier stages


class OptunaLR(BaseModel):
    """Learning-rate search with Optuna (TPE, log-uniform in [low, high]) per design cell."""

    model_config = _STRICT
    search: Literal["optuna"]
    low: PositiveFloat
    high: PositiveFloat
    trials: PositiveInt
    parallel: PositiveInt | None = None
    seed: NonNegInt = 0
    max_failed: PositiveInt | None = None

    @model_validator(mode="after")
    def _ordered(self) -> OptunaLR:
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got low={self.low}, high={self.high}")
        return self


class BracketLR(BaseModel):
    """Bracketing LR search per cell (sweeps.bracket): expand by `factor` until the best LR is
    interior, then refine with parabola steps until the bracket is narrower than `tolerance` decades."""

    model_config = _STRICT
    search: Literal["bracket"]
    start: Union[Literal["law", "recipe"], PositiveFloat] = "recipe"
    factor: Annotated[float, Field(gt=1)] = 2.0
    tolerance: PositiveFloat = 0.1
    max_trials: Annotated[int, Field(ge=3)] = 8


def _lr_kind(value: Any) -> str:
    if isinstance(value, BracketLR) or isinstance(value, dict) and value.get("search") == "bracket":
        return "bracket"
    return "search" if isinstance(value, (dict, OptunaLR)) else "list"


LRAxis = Annotated[Union[Annotated[Axis[PositiveFloat], Tag("list")],
                         Annotated[OptunaLR, Tag("search")],
                         Annotated[BracketLR, Tag("bracket")]], Discriminator(_lr_kind)]


class Resources(BaseModel):
    """Ray resources of ONE PACK task (a pack trains up to packing.max_runs runs at once)."""

    model_config = _STRICT
    cpus: PositiveFloat = 1.0
    gpus: NonNegFloat = 0.0
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


def _scalar_to_list(v: Any) -> Any:
    """`lr: 1e-3` means `lr: [1e-3]` (the same for lambda, k and seeds)."""
    return [v] if isinstance(v, (int, float, str)) and not isinstance(v, bool) else v


class Stage(BaseModel):
    """One stage of a staged sweep: a name and the top-level fields it overrides."""

    model_config = _STRICT
    name: str
    design: Design | None = None
    lr: LRAxis | None = None
    lam: Axis[NonNegFloat] | None = Field(None, alias="lambda")   # the same strict types as SweepSpec's
    k: Axis[PositiveInt] | None = None      # TopK recipes' sparsity axis
    recipe: str | None = None
    batch_size: PositiveInt | None = None
    hparams: dict[str, Any] | None = None
    seeds: Axis[NonNegInt] | None = None
    data_seed: NonNegInt | None = None
    eval_max_rows: PositiveInt | None = None
    downstream_windows: NonNegInt | None = None
    resources: Resources | None = None
    packing: Packing | None = None

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"must be letters, digits, '_', '.', '-', got {v!r}")
        return v

    _axes_as_lists = field_validator("lr", "lam", "k", "seeds", mode="before")(_scalar_to_list)

    def overrides(self) -> dict[str, Any]:
        """The fields this stage sets (by their spec names), to lay over the top-level ones."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"name"})


class SweepSpec(BaseModel):
    """A whole sweep: data, recipe, design, LR/lambda/seed axes, resources, retries."""

    model_config = _STRICT
    name: str
    activations: Activations
    recipe: str = "anthropic-2024-04"
    batch_size: PositiveInt | None = None
    design: Design | None = None   # required unless every stage sets its own
    lr: LRAxis | None = None
    lam: Axis[NonNegFloat] | None = Field(None, alias="lambda")
    k: Axis[PositiveInt] | None = None      # TopK recipes' sparsity axis (where others sweep lambda)
    seeds: Axis[NonNegInt] = [0]
    data_seed: NonNegInt = 0
    hparams: dict[str, Any] = {}
    eval_max_rows: PositiveInt | None = None
    downstream_windows: NonNegInt = 0   # lm data: CE / embedding recovered on N held-out windows
    resources: Resources = Resources()
    packing: Packing = Packing()
    retries: NonNegInt = 2
    checkpoint_every: NonNegInt = 1000
    optuna_storage: str | None = None
    stages: Annotated[list[Stage], Field(min_length=1)] | None = None

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

    @field_validator("hparams")
    @classmethod
    def _hparams_finite(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            for x in (value if isinstance(value, (list, tuple)) else [value]):
                if isinstance(x, float) and not math.isfinite(x):
                    raise ValueError(f"{key} must be a finite number, got {x!r}")
        return v

    _axes_as_lists = field_validator("lr", "lam", "k", "seeds", mode="before")(_scalar_to_list)

    @property
    def lr_bracket(self) -> BracketLR | None:
        """The bracketing search settings, or None."""
        return self.lr if isinstance(self.lr, BracketLR) else None

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
_UNION_TAGS = {"activations": {"synthetic", "store", "lm"},
               "design": {"grid", "isoflop", "optimum", "validate", "points"}, "lr": {"list", "search", "bracket"}}


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
    if parsed.stages is None:
        _check_unstaged(parsed, where)
        _check_hparams(parsed, where)
    else:
        for index in range(len(parsed.stages)):
            _check_hparams(stage_spec(parsed, index, where), where)
    return parsed


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with a repeated key (PyYAML lets the last one win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_unstaged(spec: SweepSpec, where: str) -> None:
    """Without stages: a design is required, and nothing may depend on laws of earlier stages."""
    if spec.design is None:
        raise UserError(f"{where}: design: required field missing")
    if spec.design.kind in DERIVED_DESIGNS:
        raise UserError(f"{where}: design.kind: {spec.design.kind} is derived from the laws of earlier stages; "
                        "use it inside `stages:`")
    if spec.lr_bracket is not None and spec.lr_bracket.start == "law":
        raise UserError(f"{where}: lr.start: law needs the LR law of earlier stages; use `recipe` or a number")


def stage_spec(spec: SweepSpec, index: int, where: str = "spec") -> SweepSpec:
    """Stage `index` as a plain spec: the top-level fields with the stage's overrides laid over them.

    Checks what can be checked before anything runs: distinct stage names, a design for every
    stage, and that a derived design (optimum, validate) or `lr.start: law` has an earlier stage
    whose laws it can use. Whether those laws can actually be fitted is known only when the stage
    starts (sweeps.stages).
    """
    assert spec.stages is not None
    names = [s.name for s in spec.stages]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"{where}: stages: names must be distinct, repeated: {repeated}")
    stage = spec.stages[index]
    field = f"stages.{index}"
    raw = spec.model_dump(mode="json", by_alias=True, exclude={"stages"})
    raw.update(stage.overrides())
    if raw.get("design") is None:
        raise UserError(f"{where}: {field}.design: required (no top-level design to inherit)")
    kind = raw["design"]["kind"]
    earlier = [_design_kind(spec, j) for j in range(index)]
    if kind in DERIVED_DESIGNS and not any(k in ("grid", "isoflop") for k in earlier):
        raise UserError(f"{where}: {field}.design.kind: {kind} needs an earlier grid or isoflop stage to fit "
                        "the compute-optimal allocation from")
    lr = raw.get("lr")
    if isinstance(lr, dict) and lr.get("start") == "law" and index == 0:
        raise UserError(f"{where}: {field}.lr.start: law needs an earlier stage to fit the LR law from")
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{where}: {field}: {format_errors(exc)}") from None


def _design_kind(spec: SweepSpec, index: int) -> str | None:
    stage = spec.stages[index]  # type: ignore[index]
    design = stage.design if stage.design is not None else spec.design
    return None if design is None else design.kind


def parse_yaml(text: str, where: str) -> Any:
    """YAML text to Python; a syntax error becomes one line with its position."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
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
        for j in range(len(loc) - 1, 0, -1):   # also inside stages: stages.0.design.grid.steps
            if loc[j] in _UNION_TAGS.get(loc[j - 1], ()):
                loc.pop(j)
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
