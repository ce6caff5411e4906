"""`saescale compare DIR...`: recipes compared by their scaling on NMSE and L0 (analysis.compare)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def compare_command(
    results: list[Path] = typer.Argument(..., help="Results directories or table files (any mix of recipes)."),
    target_nmse: Optional[float] = typer.Option(
        None, "--target-nmse", help="NMSE to reach (default: the lowest NMSE every recipe reached)."),
    max_l0: Optional[float] = typer.Option(
        None, "--max-l0", help="Only runs with L0 at most this count toward the NMSE frontier (fair comparison)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the intervals (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write compare_frontier and compare_pareto figures here."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Fit each recipe's NMSE-vs-compute frontier law and L0-NMSE Pareto frontier; name the cheapest recipe."""
    from analysis.compare import compare_table, load_many

    comparison = compare_table(load_many(results), target_nmse=target_nmse, max_l0=max_l0, n_boot=bootstrap,
                               seed=seed)
    written = []
    if out is not None:
        from analysis.compare_plots import save_compare_figures

        written = save_compare_figures(comparison, out)
    if as_json:
        print(json.dumps(comparison.to_json(), indent=2))
        return
    _print(comparison, written)


def _print(comparison, written: list[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    target = comparison.target_nmse
    title = "recipes by compute to reach NMSE " + ("(none fitted)" if target is None else f"{target:.4g}")
    if comparison.max_l0 is not None:
        title += f" at L0 <= {comparison.max_l0:g}"
    table = Table(title=title)
    for col in ("recipe", "runs", "NMSE = k C^a: a", "C at target", "90% interval", "Pareto points", "note"):
        table.add_column(col)
    for s in sorted(comparison.recipes, key=lambda r: (r.flops_at_target is None, r.flops_at_target or 0.0)):
        law = s.frontier.law
        interval = "" if s.flops_interval is None else f"[{s.flops_interval[0]:.3g}, {s.flops_interval[1]:.3g}]"
        table.add_row(s.recipe, str(s.n_runs), "" if law is None else f"{law.exponents['C']:.3f}",
                      "" if s.flops_at_target is None else f"{s.flops_at_target:.3g}", interval,
                      str(len(s.pareto)), s.reason)
    console = Console(width=160)   # the table is wide; a narrower terminal wraps it
    console.print(table)
    console.print(f"cheapest recipe to reach the target: {comparison.best or 'none (no recipe fitted)'}")
    for path in written:
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add `compare` to the CLI."""
    app.command("compare")(compare_command)
