"""Fit a whole results table (every comparable group) and write `fit.json`.

`saescale fit DIR` fits all groups and reports each in fit.json; `--where KEY=VALUE` keeps only
matching runs first (any column), which is how `recommend` is pointed at a single group.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.groupfit import GroupFit, fit_group
from analysis.lrlaw import METHODS
from analysis.table import load_results, select_runs, split_groups, usable_runs
from sae_core.errors import UserError

FIT_VERSION = 1
FIT_LEVEL = 0.95


@dataclass
class ResultsFit:
    """The fits of every selected group of one results table."""

    source: str
    n_rows: int
    n_used: int
    dropped: dict[str, int]
    groups: list[GroupFit]
    n_boot: int
    seed: int
    lr_method: str

    def only_group(self) -> GroupFit:
        """The single group, or a UserError listing the groups to choose from."""
        if len(self.groups) != 1:
            labels = "; ".join(g.group.label for g in self.groups)
            raise UserError(f"{len(self.groups)} groups of comparable runs; select one with --where KEY=VALUE: {labels}")
        return self.groups[0]

    def to_json(self, level: float = FIT_LEVEL) -> dict:
        """fit.json's content: provenance, dropped rows, and every group's laws."""
        return jsonable({
            "version": FIT_VERSION,
            "source": self.source,
            "n_rows": self.n_rows,
            "n_used": self.n_used,
            "dropped": self.dropped,
            "bootstrap": self.n_boot,
            "seed": self.seed,
            "lr_method": self.lr_method,
            "interval_level": level,
            "groups": [g.to_json(level) for g in self.groups],
        })


def fit_results(
    path: str | Path,
    *,
    where: dict[str, str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    lr_method: str = "parabola",
) -> ResultsFit:
    """Load a results directory or table file and fit every (selected) group."""
    if n_boot < 0:
        raise UserError("bootstrap must be >= 0")
    if lr_method not in METHODS:
        raise UserError(f"LR method {lr_method!r}: choose one of {', '.join(METHODS)}")
    usable = usable_runs(load_results(path))
    groups = split_groups(select_runs(usable.runs, where) if where else usable.runs)
    fits = [fit_group(g, n_boot=n_boot, seed=seed, lr_method=lr_method) for g in groups]
    if not any(f.fitted_laws() for f in fits):
        raise UserError(f"too few points to fit any law: {'; '.join(f'{f.group.label}: {f.surface_reason}' for f in fits)}")
    return ResultsFit(str(path), usable.n_rows, len(usable.runs), usable.dropped, fits, n_boot, seed, lr_method)


def fit_results_dir(path: str | Path, **kwargs) -> dict:
    """Fit a results directory and write DIR/fit.json; returns its content (kwargs: fit_results')."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a results directory")
    content = fit_results(path, **kwargs).to_json()
    write_json(content, path / "fit.json")
    return content


def write_json(content: dict, path: Path) -> Path:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    tmp.replace(path)
    return path


def jsonable(obj: object) -> object:
    """numpy scalars/arrays -> Python, tuples -> lists, NaN/inf -> None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
