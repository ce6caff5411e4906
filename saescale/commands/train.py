"""`saescale train`: one SAE training run on synthetic data or an activation store."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from sae_core.errors import UserError


def _parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats become null so the output is strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def train_command(
    recipe: str = typer.Option(..., "--recipe", help="Recipe name, e.g. anthropic-2024-04 or anthropic-2025-02."),
    source: str = typer.Option("synthetic", "--source", help="'synthetic' or the path of an activation store."),
    m: int = typer.Option(..., "--m", help="Number of SAE features."),
    steps: int = typer.Option(..., "--steps", help="Training steps."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size (default: the recipe's)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default: the recipe's)."),
    lam: Optional[float] = typer.Option(None, "--lambda", help="Final sparsity coefficient (default: the recipe's)."),
    seed: int = typer.Option(0, "--seed", help="Initialisation seed."),
    data_seed: int = typer.Option(0, "--data-seed", help="Seed of the batch order."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's)."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe hyperparameter: KEY=VALUE (repeatable)."),
    n: Optional[int] = typer.Option(None, "--n", help="Input dimension: synthetic data's (default 64); checked against a store's."),
    m_true: int = typer.Option(512, "--m-true", help="Synthetic: number of true features."),
    tokens: int = typer.Option(1_000_000, "--tokens", help="Synthetic: rows of data."),
    synthetic_seed: int = typer.Option(0, "--synthetic-seed", help="Synthetic: generator seed."),
    mean_active: float = typer.Option(5.0, "--mean-active", help="Synthetic: expected active true features per row."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where synthetic data is generated (default $SAESCALE_CACHE or ~/.cache/saescale)."),
    checkpoint_dir: Optional[Path] = typer.Option(None, "--checkpoint-dir", help="Checkpoint here (and resume from here)."),
    checkpoint_every: int = typer.Option(0, "--checkpoint-every", help="Checkpoint every N steps (0: only at the end / on SIGTERM)."),
    export: Optional[Path] = typer.Option(None, "--export", help="Write safetensors weights + cfg.json to this directory."),
    downstream_windows: int = typer.Option(0, "--downstream-windows", help="LM stores: splice the SAE into the model on N held-out windows (CE / embedding recovered)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the config and metrics."),
) -> None:
    """Train one SAE by a published recipe and print its held-out metrics."""
    from sae_core.config import RunConfig
    from sae_core.synthetic import SyntheticConfig, synthetic_store
    from sae_core.train import TrainingInterrupted, TrainOptions, train
    from sae_core.store import ActivationStore
    from sae_core.runtime import default_cache_dir

    config = RunConfig(recipe=recipe, m=m, steps=steps, batch_size=batch_size, lr=lr, lam=lam,
                       seed=seed, data_seed=data_seed, hparams=_parse_sets(set_))
    run = config.resolve()  # validate before any data is generated
    if source == "synthetic":
        store = synthetic_store(SyntheticConfig(n=64 if n is None else n, m_true=m_true, tokens=tokens, seed=synthetic_seed,
                                                mean_active=mean_active), cache_dir or default_cache_dir())
    else:
        store = ActivationStore(source)
        if n is not None and n != store.n:
            raise UserError(f"n mismatch: --n {n} but store {source} has n={store.n}")
    options = TrainOptions(device=device, threads=threads, checkpoint_dir=checkpoint_dir,
                           checkpoint_every=checkpoint_every, keep_weights=export is not None,
                           downstream_windows=downstream_windows)
    try:
        result = train(run, store, options)
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        raise typer.Exit(143) from None
    row = result.row()
    if export is not None and result.weights is not None:
        from sae_core.export import export_sae
        row["export"] = str(export_sae(result.weights, result.run, store, export))
    if as_json:
        print(json.dumps(_clean(row), default=_json_default))
    else:
        _print_summary(row)
    if result.status != "ok":
        raise typer.Exit(1)


def _print_summary(row: dict[str, Any]) -> None:
    keys = ["recipe", "n", "m", "steps", "batch_size", "lr", "lambda", "status", "loss", "mse", "nmse", "fvu",
            "l0", "l1", "dead_frac", "dense_frac", "shrinkage", "mmcs", "recovered_frac", "ce_recovered_zero",
            "ce_recovered_mean", "emb_cos_recovered", "flops",
            "train_tokens_per_s", "wall_s"]
    for k in keys:
        if k not in row:
            continue
        v = row[k]
        if isinstance(v, float):
            v = f"{v:.6g}"
        print(f"{k:>20}  {v}")
    if row.get("error"):
        print(f"{'error':>20}  {row['error']}")


def recipes_command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the registered recipes with their source and every default hyperparameter."""
    from sae_core.recipes import get_recipe, recipe_names

    recipes = [get_recipe(name) for name in recipe_names()]
    if as_json:
        print(json.dumps({r.name: {"arch": r.arch, "source": r.source, "transcoders": r.supports_transcoder,
                                   "defaults": dict(r.defaults)} for r in recipes}, indent=1))
        return
    for r in recipes:
        print(f"{r.name}  [{r.arch}{', transcoders' if r.supports_transcoder else ''}]  {r.source}")
        print(f"    {r.notes}")
        for key, value in r.defaults.items():
            print(f"    {key:<22} {value}")


def register(app: typer.Typer) -> None:
    """Attach `saescale train` and `saescale recipes`."""
    app.command("train")(train_command)
    app.command("recipes")(recipes_command)
