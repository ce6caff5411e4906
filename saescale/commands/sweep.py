"""`saescale sweep run|status`: thin wrappers over sweeps.run_sweep / sweeps.sweep_status.

Heavy imports (torch, ray, optuna) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

sweep_app = typer.Typer(help="Run, resume and inspect SAE sweeps (specs: docs/sweeps.md).", no_args_is_help=True)


@sweep_app.command("run")
def run(
    spec: Path = typer.Argument(..., help="Sweep spec YAML (e.g. sweeps/specs/quickstart.yaml)."),
    results: Optional[Path] = typer.Option(None, "--results", help="Results directory [default: results/<name>]."),
    address: Optional[str] = typer.Option(
        None, "--address", help="Ray address: 'auto' or host:port for a running cluster [default: $RAY_ADDRESS, "
                                "else an embedded local Ray]."),
    force: bool = typer.Option(False, "--force", help="Use a results directory holding a different spec: its "
                                                      "files move to replaced/<stamp>/ first."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                            help="Live progress bar, or a plain status line every 10 s [default: the bar when stderr is a "
                                                 "terminal]."),
) -> None:
    """Run a sweep, or resume it: finished runs are skipped, failed ones retried."""
    from sweeps.api import run_sweep

    summary = run_sweep(spec, results, address=address, force=force, progress=progress)
    typer.echo(summary.line())
    if summary.failed:
        from saescale.signals import EXIT_FAILED_RUNS

        typer.echo(f"error: {summary.failed} of {summary.total_runs} runs failed (their `error` column in "
                   f"{Path(summary.results_dir) / 'results.parquet'}); rerun the same command to retry those "
                   "with attempts left", err=True)
        raise typer.Exit(EXIT_FAILED_RUNS)


@sweep_app.command("status")
def status(
    results: Path = typer.Argument(..., help="A sweep's results directory (e.g. results/quickstart)."),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Done / failed / diverged / pending runs against the plan, FLOPs spent, time."""
    from sweeps.api import sweep_status
    from sweeps.stages import stage_lines, validation_summary

    report = sweep_status(results)
    if as_json:
        typer.echo(json.dumps({**asdict(report), "stages": stage_lines(results),
                               "validation": validation_summary(results)}, indent=1, default=str))
    else:
        typer.echo("\n".join(report.lines() + stage_lines(results)))


def register(app: typer.Typer) -> None:
    """Attach `sweep run` and `sweep status` to the root app."""
    app.add_typer(sweep_app, name="sweep")
