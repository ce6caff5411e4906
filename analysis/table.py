"""Load a sweep's results table, keep the fittable runs, split comparable groups, form cells.

The table is the contract with the sweep package (DESIGN section 6): one row per run. Only
`status == "ok"` rows with a finite positive loss are fitted; losses at different lambda,
TopK k, recipe, arch, n, o, batch size or FLOP convention are not comparable, so each such group is
fitted on its own. Within a group, each (m, steps) cell is represented by its best learning
rate's loss (mean over seeds at that LR), as Anthropic fitted at fixed, near-optimal LR.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sae_core.errors import UserError

REQUIRED = ("m", "steps", "flops", "loss")
GROUP_KEYS = ("recipe", "arch", "n", "o", "batch_size", "lambda", "k", "flops_convention")
NUMERIC = ("m", "steps", "flops", "loss", "lr", "batch_size", "lambda", "k", "budget", "n", "o")
RUN_FILE_COLUMNS = (*REQUIRED, "status")  # a per-run file lacking any of these is not a complete run
K_RTOL = 1e-6  # flops / (m * steps) must agree this closely within a group


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one CSV or parquet file; any failure is a one-line UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(f"{path}: unsupported table format {suffix or '(none)'} (use .csv or .parquet)")
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UserError(f"{path}: cannot read table: {_one_line(exc)}") from exc


def load_results(path: str | Path) -> pd.DataFrame:
    """A results directory's runs (results.parquet plus newer runs/*.parquet), or one table file.

    Per-run files whose run_id is not in results.parquet, or that are newer than it (a retried
    run finished after compaction), are read and replace the compacted rows.
    """
    path = Path(path)
    if path.is_file():
        return read_table(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such results directory or table file")
    compact = path / "results.parquet"
    run_files = sorted((path / "runs").glob("*.parquet")) if (path / "runs").is_dir() else []
    if not compact.is_file() and not run_files:
        raise UserError(f"{path}: no results.parquet and no runs/*.parquet")
    frames = []
    known: set[str] = set()
    compact_mtime = -np.inf
    if compact.is_file():
        table = read_table(compact)
        if "run_id" in table.columns:
            known = set(table["run_id"].astype(str))
        compact_mtime = compact.stat().st_mtime
        frames.append(table)
    fresh = [f for f in run_files if f.stem not in known or f.stat().st_mtime > compact_mtime]
    if fresh:
        runs = pd.concat([_run_file(f) for f in fresh], ignore_index=True)
        if frames and "run_id" in runs.columns and "run_id" in frames[0].columns:
            frames[0] = frames[0][~frames[0]["run_id"].astype(str).isin(set(runs["run_id"].astype(str)))]
        frames.append(runs)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _run_file(path: Path) -> pd.DataFrame:
    """One per-run file; if it lacks a column every run has, its rows are marked incomplete."""
    table = read_table(path)
    missing = [c for c in RUN_FILE_COLUMNS if c not in table.columns]
    if missing:
        table = table.assign(status=f"incomplete (run file lacks {', '.join(missing)})")
    return table


@dataclass
class Usable:
    """The fittable runs of a table and what was dropped, by reason."""

    runs: pd.DataFrame
    n_rows: int
    dropped: dict[str, int]


def usable_runs(table: pd.DataFrame) -> Usable:
    """Keep status 'ok' rows with finite positive loss; UserError on missing or bad columns."""
    if table.empty:
        raise UserError("results table has no rows")
    if "status" in table.columns and not (table["status"].astype(str) == "ok").any():
        counts = table["status"].astype(str).value_counts()
        raise UserError(f"no successful runs ({', '.join(f'{n} {s}' for s, n in counts.items())})")
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise UserError(f"results table lacks column(s): {', '.join(missing)}")
    df = table.copy()
    for col in NUMERIC:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    dropped: dict[str, int] = {}
    if "status" in df.columns:
        status = df["status"].astype(str)
        for value, count in status[status != "ok"].value_counts().items():
            dropped[f"status={value}"] = int(count)
        df = df[status == "ok"]
    bad_loss = ~(np.isfinite(df["loss"]) & (df["loss"] > 0))
    if bad_loss.any():
        dropped["loss not finite and positive"] = int(bad_loss.sum())
    df = df[~bad_loss]
    if df.empty:
        raise UserError(f"no usable runs: {_describe(dropped)}")
    for col in ("m", "steps", "flops") + (("lr",) if "lr" in df.columns else ()):
        bad = ~(np.isfinite(df[col]) & (df[col] > 0))
        if bad.any():
            raise UserError(f"column {col} has {int(bad.sum())} non-finite or non-positive values in ok runs")
    return Usable(runs=df.reset_index(drop=True), n_rows=len(table), dropped=dropped)


@dataclass
class Group:
    """Runs whose losses are comparable, and their FLOP factor k = flops / (m * steps)."""

    key: dict[str, object]
    runs: pd.DataFrame
    k: float

    @property
    def label(self) -> str:
        """`key=value` pairs, e.g. 'recipe=anthropic-2024-04 lambda=5'."""
        return " ".join(f"{k}={_fmt(v)}" for k, v in self.key.items()) or "all"

    @property
    def convention(self) -> str | None:
        """The FLOP convention name recorded in the table, if any."""
        col = self.runs.get("flops_convention")
        return None if col is None else str(col.iloc[0])

    @property
    def batch_size(self) -> float | None:
        """The group's batch size (None when the table has no batch_size column)."""
        return float(self.runs["batch_size"].iloc[0]) if "batch_size" in self.runs else None

    @property
    def lam(self) -> float | None:
        """The group's final sparsity coefficient (None without a lambda column)."""
        return float(self.runs["lambda"].iloc[0]) if "lambda" in self.runs else None


def split_groups(runs: pd.DataFrame) -> list[Group]:
    """One Group per combination of the GROUP_KEYS columns present; UserError if k varies."""
    keys = [c for c in GROUP_KEYS if c in runs.columns]
    parts = runs.groupby(keys, dropna=False, sort=True) if keys else [((), runs)]
    groups = []
    for values, part in parts:
        values = values if isinstance(values, tuple) else (values,)
        key = {k: _plain(v) for k, v in zip(keys, values) if not (k == "k" and pd.isna(v))}  # no k: not TopK
        ratio = part["flops"] / (part["m"] * part["steps"])
        k = float(ratio.median())
        if not np.allclose(ratio, k, rtol=K_RTOL, atol=0):
            label = " ".join(f"{a}={_fmt(b)}" for a, b in key.items()) or "all"
            raise UserError(
                f"group {label}: flops/(m*steps) varies from {ratio.min():.6g} to {ratio.max():.6g}; "
                "the FLOP convention must be constant within a group"
            )
        groups.append(Group(key=key, runs=part.reset_index(drop=True), k=k))
    return groups


def select_runs(runs: pd.DataFrame, where: dict[str, str]) -> pd.DataFrame:
    """Runs whose columns match every `column=value` selector (numbers compare as floats).

    Any column works (e.g. lambda, or a recipe hyperparameter hp_* that a sweep varied).
    """
    mask = np.ones(len(runs), bool)
    for col, wanted in where.items():
        if col not in runs.columns:
            raise UserError(f"cannot select on {col}: no such column")
        mask &= runs[col].map(lambda value: _matches(value, wanted)).to_numpy(bool)
    if not mask.any():
        present = "; ".join(
            f"{col} values: {', '.join(_fmt(_plain(v)) for v in sorted(runs[col].dropna().unique()))}" for col in where
        )
        raise UserError(f"no runs match {_where_text(where)} ({present})")
    return runs[mask].reset_index(drop=True)


def parse_where(items: list[str]) -> dict[str, str]:
    """Parse `KEY=VALUE` selectors from the command line."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"selector {item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (m, steps): loss of the best LR (mean over seeds at that LR), that LR, runs.

    Columns: m, steps, flops, loss, lr (NaN without an lr column), n_runs, n_lrs, budget.
    """
    df = runs.assign(_lr=runs["lr"] if "lr" in runs.columns else np.nan)
    per_lr = (
        df.groupby(["m", "steps", "_lr"], dropna=False)
        .agg(loss=("loss", "mean"), flops=("flops", "mean"), n=("loss", "size"))
        .reset_index()
    )
    best = per_lr.loc[per_lr.groupby(["m", "steps"])["loss"].idxmin()]
    counts = per_lr.groupby(["m", "steps"]).agg(n_runs=("n", "sum"), n_lrs=("_lr", "size"))
    out = best.merge(counts, on=["m", "steps"]).rename(columns={"_lr": "lr"}).drop(columns="n")
    if "budget" in runs.columns:
        budget = runs.groupby(["m", "steps"])["budget"].first().rename("budget")
        out = out.merge(budget, on=["m", "steps"])
    else:
        out["budget"] = np.nan
    return out.sort_values(["flops", "m"]).reset_index(drop=True)


def lr_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean loss over seeds per (m, steps, lr): the points the LR law is found from."""
    return (
        runs.groupby(["m", "steps", "lr"])
        .agg(loss=("loss", "mean"), flops=("flops", "mean"))
        .reset_index()
    )


def _matches(value: object, wanted: str) -> bool:
    try:
        return bool(np.isclose(float(value), float(wanted), rtol=1e-9, atol=0))
    except (TypeError, ValueError):
        return str(value) == wanted


def _where_text(where: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in where.items())


def _plain(value: object) -> object:
    """numpy scalars -> Python scalars (JSON-ready)."""
    return value.item() if isinstance(value, np.generic) else value


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _describe(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in dropped.items()) or "table is empty"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
