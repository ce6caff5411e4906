"""`saescale fit`, `fit-table`, `recommend`, `validate` and `plot`: thin wrappers over the analysis package.

Heavy imports (pandas, scipy, matplotlib) happen inside the commands. Every command that reads
a results directory fits each group of comparable runs (same recipe, arch, n, o, batch size,
lambda, FLOP convention); `--where KEY=VALUE` (or `--lambda X`) keeps only matching runs, and
`recommend` needs exactly one group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from sae_core.errors import UserError

WHERE_HELP = "Keep only runs with KEY=VALUE (any column, e.g. lambda=5; repeatable): selects groups of comparable runs."
LR_METHOD_HELP = "Optimal LR per cell: 'parabola' in log LR (default) or 'band' (geometric centre of LRs within 0.25% of the best loss)."

# Options shared by the analysis commands: which runs to fit, and how.
Where = Annotated[list[str], typer.Option("--where", help=WHERE_HELP)]
Lambda = Annotated[Optional[float], typer.Option("--lambda", help="Shortcut for --where lambda=X.")]
Seed = Annotated[int, typer.Option("--seed", help="Bootstrap seed.")]
LrMethod = Annotated[str, typer.Option("--lr-method", help=LR_METHOD_HELP)]


def _where(where: list[str], lam: Optional[float]) -> dict[str, str]:
    from analysis.table import parse_where

    selected = parse_where(where)
    if lam is not None:
        selected["lambda"] = repr(lam)
    return selected


def _fmt_interval(interval) -> str:
    return "" if interval is None else f"[{interval[0]:.4g}, {interval[1]:.4g}]"


def fit_command(
    results: Path = typer.Argument(..., help="Results directory (results.parquet and/or runs/*.parquet) or a table file."),
    where: Where = [],
    lam: Lambda = None,
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the intervals (0: none)."),
    seed: Seed = 0,
    lr_method: LrMethod = "parabola",
    as_json: bool = typer.Option(False, "--json", help="Print fit.json's content instead of the table."),
) -> None:
    """Fit every law (frontier, IsoFLOP, surface, LR) and write DIR/fit.json (95% intervals)."""
    from analysis.fitfile import fit_results, write_json

    fit = fit_results(results, where=_where(where, lam), n_boot=bootstrap, seed=seed, lr_method=lr_method)
    content = fit.to_json()
    target = results / "fit.json" if results.is_dir() else results.with_name(results.stem + ".fit.json")
    write_json(content, target)
    if as_json:
        print(json.dumps(content, indent=2))
        return
    _print_fit(content, target)


def _print_fit(content: dict, target: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    dropped = ", ".join(f"{n} {why}" for why, n in content["dropped"].items()) or "none"
    console.print(f"{content['n_used']} of {content['n_rows']} rows fitted (dropped: {dropped}); wrote {target}")
    for group in content["groups"]:
        table = Table(title=f"{group['label']}  ({group['n_runs']} runs, {group['n_cells']} cells)")
        for col in ("law", "parameters", "95% interval", "points"):
            table.add_column(col)
        s = group["surface"]
        if "reason" in s:
            table.add_row("surface", s["reason"], "", "")
        else:
            for name in ("E", "A", "B", "alpha", "beta"):
                table.add_row(
                    "surface" if name == "E" else "", f"{name} = {s[name]:.4g}",
                    _fmt_interval(s.get(f"{name}_interval")), str(s["n_points"]) if name == "E" else "",
                )
            table.add_row("", f"objective {s['objective']:.4g}, converged {s['converged']}", "", "")
        laws = [("frontier L*(C)", group["frontier"]["law"])]
        laws += [(f"IsoFLOP {k}(C)", v) for k, v in group["isoflop"]["laws"].items()]
        laws += [(f"LR {k}", v) for k, v in group["lr"].get("laws", {}).items()]
        for name, law in laws:
            if law is None:
                continue
            for j, (var, exp) in enumerate(law["exponents"].items()):
                interval = law.get("exponent_intervals", {}).get(var)
                params = f"k = {law['k']:.4g}, a_{var} = {exp:.4g}" if j == 0 else f"a_{var} = {exp:.4g}"
                table.add_row(name if j == 0 else "", params, _fmt_interval(interval), str(law["n_points"]) if j == 0 else "")
        alloc = group["allocation"]
        table.add_row("allocation", f"basis {alloc['basis']}: {alloc['why']}", "", "")
        console.print(table)
        for warning in group["warnings"]:
            console.print(f"warning: {warning}", style="yellow", highlight=False)


def fit_table_command(
    table: Path = typer.Argument(..., help="CSV or parquet table with one row per trained model."),
    size_col: str = typer.Option(..., "--size-col", help="Column of model size N (SAE: features m)."),
    loss_col: str = typer.Option(..., "--loss-col", help="Column of the final loss."),
    data_col: Optional[str] = typer.Option(None, "--data-col", help="Column of data D (tokens or steps)."),
    flops_col: Optional[str] = typer.Option(None, "--flops-col", help="Instead of --data-col: derive D = FLOPs / (k N) from this column."),
    flops_per_param_token: float = typer.Option(6.0, "--flops-per-param-token", help="k in D = FLOPs / (k N) (Chinchilla: 6)."),
    drop_worst: int = typer.Option(0, "--drop-worst", help="Drop the K highest-loss points first (Epoch AI drop 5)."),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Bootstrap resamples for 95% intervals (0: none)."),
    seed: Seed = 0,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Fit L(N, D) = E + A N^-alpha + B D^-beta to any table (sum-Huber, 4,500 L-BFGS starts)."""
    from analysis.fitfile import jsonable
    from analysis.fittable import fit_table

    fit = fit_table(
        table, size_col=size_col, loss_col=loss_col, data_col=data_col, flops_col=flops_col,
        flops_per_param_token=flops_per_param_token, drop_worst=drop_worst, n_boot=bootstrap, seed=seed,
    )
    content = jsonable(fit.to_json())
    if as_json:
        print(json.dumps(content, indent=2))
        return
    print(f"L = E + A N^-alpha + B D^-beta on {content['n_points']} points ({content['n_dropped']} dropped)")
    for name in ("E", "A", "B", "alpha", "beta"):
        interval = content.get(f"{name}_interval")
        print(f"  {name:<6}{content[name]:>12.6g}  {'95% ' + _fmt_interval(interval) if interval else ''}")
    print(f"  N* ~ C^{content['size_exponent']:.4f}, D* ~ C^{content['data_exponent']:.4f}")
    print(f"  objective {content['objective']:.9g} (sum of Huber, delta 1e-3), converged {content['converged']}, "
          f"{content['n_starts_at_best']} of {content['n_starts']} starts reached the optimum")
    if bootstrap:
        print(f"  bootstrap: {content['bootstrap']} of {content['bootstrap_requested']} refits converged (seed {seed})")


def recommend_command(
    flops: Optional[float] = typer.Option(None, "--flops", help="Compute budget C in FLOPs (table's convention), e.g. 1e18."),
    flops_factor: Optional[float] = typer.Option(None, "--flops-factor", help="Instead of --flops: C = this x the largest compute in the data."),
    results: Path = typer.Option(..., "--results", help="Results directory (or table file)."),
    where: Where = [],
    lam: Lambda = None,
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 90% intervals."),
    seed: Seed = 0,
    lr_method: LrMethod = "parabola",
    target_l0: Optional[float] = typer.Option(None, "--target-l0", help="Choose lambda to reach this L0 (needs runs at >= 2 lambdas)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Features, steps, tokens, batch size, LR, lambda and predicted loss at C, with 90% prediction intervals."""
    from analysis.fitfile import fit_results, jsonable
    from analysis.recommend import recommend

    if (flops is None) == (flops_factor is None):
        raise UserError("give exactly one of --flops and --flops-factor")
    if target_l0 is not None:
        rec = jsonable(_recommend_l0(results, _where(where, lam), flops, flops_factor, target_l0, bootstrap, seed, lr_method))
        flops = rec["flops"]
    else:
        fit = fit_results(results, where=_where(where, lam), n_boot=bootstrap, seed=seed, lr_method=lr_method)
        group = fit.only_group()
        flops = _target_flops(flops, flops_factor, group.max_flops)
        rec = jsonable(recommend(group, flops))
    if as_json:
        print(json.dumps(rec, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"recommendation at C = {flops:.3g} FLOPs ({rec['basis']} allocation)")
    for col in ("quantity", "value", "90% interval"):
        table.add_column(col)
    keys = ("features", "steps", "tokens", "batch_size", "lr", "lambda", "predicted_loss")
    for key in keys + (("predicted_l0",) if "predicted_l0" in rec else ()):
        value = rec[key]
        table.add_row(key, "-" if value is None else f"{value:.4g}", _fmt_interval(rec[f"{key}_interval"]))
    console = Console()
    console.print(table)
    console.print(f"extrapolation factor: {rec['extrapolation_factor']:.3g}x the largest compute seen "
                  f"({rec['max_flops_seen']:.3g}); LR from {rec['lr_basis']}", highlight=False)
    for warning in rec["warnings"]:
        console.print(f"warning: {warning}", style="yellow", highlight=False)


def _recommend_l0(results: Path, where: dict[str, str], flops, flops_factor, target_l0: float, bootstrap: int,
                  seed: int, lr_method: str) -> dict:
    """recommend --target-l0: lambda for that L0 across lambda groups, and the rest at that lambda."""
    from analysis.sparsity import recommend_for_l0
    from analysis.table import load_results, select_runs, usable_runs

    runs = usable_runs(load_results(results)).runs
    runs = select_runs(runs, where) if where else runs
    flops = _target_flops(flops, flops_factor, float(runs["flops"].max()))
    return recommend_for_l0(runs, flops, target_l0, n_boot=bootstrap, seed=seed, lr_method=lr_method)


def validate_command(
    results: Path = typer.Argument(..., help="Results directory (or table file)."),
    holdout: int = typer.Option(2, "--holdout", help="Backtest the K largest budgets, each refitted on less compute."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for the figure (PNG and SVG)."),
    where: Where = [],
    lam: Lambda = None,
    bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples per refit."),
    seed: Seed = 0,
    lr_method: LrMethod = "parabola",
    as_json: bool = typer.Option(False, "--json", help="Print validate.json's content instead of the table."),
) -> None:
    """Backtest the laws: predict the K largest budgets from smaller ones; write validate.json."""
    from analysis.fitfile import jsonable, write_json
    from analysis.validate import validate_results

    if holdout < 1:
        raise UserError(f"--holdout must be >= 1, got {holdout}")
    content = jsonable(validate_results(
        results, holdout=holdout, where=_where(where, lam), n_boot=bootstrap, seed=seed, lr_method=lr_method,
    ))
    target = results / "validate.json" if results.is_dir() else results.with_name(results.stem + ".validate.json")
    write_json(content, target)
    paths = []
    if out is not None:
        from analysis.validate_plot import save_validate_figure

        paths = save_validate_figure(content, out)
    if as_json:
        print(json.dumps(content, indent=2))
        return
    _print_validate(content, target, paths)


def _print_validate(content: dict, target: Path, paths: list[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    level = content["interval_level"]
    table = Table(title=f"backtest: {content['holdout']} largest of {len(content['budgets'])} budgets ({level:.0%} intervals)")
    for col in ("budget", "fitted up to", "quantity", "predicted", "interval", "measured", "covered"):
        table.add_column(col)
    for h in content["holdouts"]:
        for j, key in enumerate(("loss", "features", "steps", "lr")):
            measured, covered = h["measured"][key], h["covered"][key]
            predicted = h["predicted"][key]
            table.add_row(
                f"{h['flops']:.3g}" if j == 0 else "",
                (f"{h['fitted_max_flops']:.3g}" if h["fitted_max_flops"] else "-") if j == 0 else "",
                key, "-" if predicted is None else f"{predicted:.4g}", _fmt_interval(h["interval"][key]),
                "-" if measured is None else f"{measured:.4g}",
                "-" if covered is None else ("yes" if covered else "NO"),
            )
    console = Console(width=110)
    console.print(table)
    cov = ", ".join(f"{k} {'-' if v is None else f'{v:.0%}'}" for k, v in content["coverage"].items())
    console.print(f"coverage: {cov}; wrote {target}", highlight=False)
    for h in content["holdouts"]:
        if h.get("reason"):
            console.print(f"warning: budget {h['flops']:.3g}: {h['reason']}", style="yellow", highlight=False)
    check = content.get("validate_stage")
    if check:
        if "reason" in check:
            console.print(f"validate stage: {check['reason']}", highlight=False)
        else:
            console.print(
                f"validate stage at C = {check['flops']:.3g}: center within 1% of the best neighbour: "
                f"{check['center_within_1pct_of_best_neighbour']}; loss in its interval: {check['loss_covered']}; "
                f"best LR ({check['best_lr_role']}) in the eta* interval: {check['best_lr_in_interval']}",
                highlight=False,
            )
    if paths:
        console.print(f"wrote {len(paths)} figure files", highlight=False)


def _target_flops(flops: float | None, factor: float | None, max_flops: float) -> float:
    """The budget asked for: --flops as given, or --flops-factor times the data's largest compute."""
    if flops is not None:
        return flops
    if factor is None or not factor > 0:
        raise UserError(f"--flops-factor must be > 0, got {factor}")
    return factor * max_flops


def plot_command(
    results: Path = typer.Argument(..., help="Results directory (or table file)."),
    out: Path = typer.Option(..., "--out", help="Directory for the figures (PNG and SVG)."),
    flops: Optional[float] = typer.Option(None, "--flops", help="Also draw the LR law's extrapolation to this compute."),
    flops_factor: Optional[float] = typer.Option(None, "--flops-factor", help="Instead of --flops: this x the largest compute in each group."),
    where: Where = [],
    lam: Lambda = None,
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the bands."),
    seed: Seed = 0,
    lr_method: LrMethod = "parabola",
) -> None:
    """Loss frontier, IsoFLOP curves, m* and S* vs compute, LR law: PNG + SVG per group."""
    from analysis.fitfile import fit_results
    from analysis.plots import file_prefixes, save_figures

    if flops is not None and flops_factor is not None:
        raise UserError("give at most one of --flops and --flops-factor")
    fit = fit_results(results, where=_where(where, lam), n_boot=bootstrap, seed=seed, lr_method=lr_method)
    for group, prefix in zip(fit.groups, file_prefixes([g.group.key for g in fit.groups])):
        target = None if flops is None and flops_factor is None else _target_flops(flops, flops_factor, group.max_flops)
        paths = save_figures(group, out, target_flops=target, prefix=prefix)
        print(f"{group.group.label}: wrote {len(paths)} files to {out}")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.command("fit")(fit_command)
    app.command("fit-table")(fit_table_command)
    app.command("recommend")(recommend_command)
    app.command("validate")(validate_command)
    app.command("plot")(plot_command)
