"""`python -m benchmarks {peak,trainer,stacking,loader,peer,sweep,slots,bookkeeping,all}`: print a table, write JSON.

Every ratio is taken against the matmul peak measured in the same process at the start of
the command, so numbers from different machines are comparable as fractions.
"""

from __future__ import annotations

import json
import platform
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import torch
import typer

from benchmarks import PeerNotInstalled
from benchmarks.peak import configure, matmul_peak

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="saescale performance harness (ratios over the device's measured matmul peak).")
OUT = Path(__file__).resolve().parent / "out"


@app.callback()
def _settings(threads: int = typer.Option(0, help="torch threads for every measurement (0: torch's default, "
                                                     "the core count; sweep tasks run with their resources.cpus)"),
              peak_sizes: str = typer.Option("", help="square GEMM sizes of the peak measurement, e.g. 64 "
                                                      "(default: 1024,2048,3072 on CPU, 4096,8192 on GPU)"),
              peak_seconds: float = typer.Option(0.0, help="seconds per peak GEMM size (0: 1 s, 0.5 s "
                                                           "for the trainer's per-repeat peaks)")) -> None:
    """Settings shared by every subcommand (threads, and the peak measurement's size for toy runs)."""
    if threads:
        torch.set_num_threads(threads)
    configure(tuple(_ints(peak_sizes)) or None, peak_seconds or None)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _peak(device: str, precision: str) -> dict[str, Any]:
    """The matmul peak for `precision`, after a warm-up training run."""
    from benchmarks.trainer import warm_up

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if precision == "tf32" and device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    warm_up(device)
    return matmul_peak(device, dtype)


def _report(name: str, peak: dict[str, Any], rows: list[dict[str, Any]], out: Path, columns: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name}: peak {peak['flops_per_s'] / 1e9:.1f} GFLOP/s ({peak['dtype']}, {peak['device']})")
    for c in columns:
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(*[f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in columns])
    Console(width=max(Console().width, 200)).print(table)   # all columns, also when stdout is a pipe
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"benchmark": name, "peak": peak, "rows": rows, "host": platform.node(),
                                "torch": torch.__version__}, indent=1, default=str))
    print(f"wrote {path}")


@app.command()
def peak(device: str = "cpu", precision: str = "fp32", out: Path = OUT) -> None:
    """Measure and print the device's dense matmul peak."""
    p = _peak(device, precision)
    _report("peak", p, [p], out, ["flops_per_s", "size", "dtype", "threads"])


@app.command()
def trainer(n: str = "64,384,768", m: str = "512,4096,8192,32768", batch_size: int = 4096, device: str = "cpu",
            precision: str = "fp32", seconds: float = 4.0, compile: bool = False, repeats: int = 3,
            recipe: Annotated[str, typer.Option(help="recipe, or several comma-separated: measured interleaved, "
                                                     "each row also over the first's")] = "anthropic-2024-04",
            out: Path = OUT) -> None:
    """Single-run training FLOP/s (4nm+6mo per token) as a fraction of the matmul peak (best of repeats)."""
    from benchmarks.trainer import trainer_efficiency
    recipes = tuple(r for r in recipe.split(",") if r)
    p = _peak(device, precision)
    rows = trainer_efficiency([(a, b) for a in _ints(n) for b in _ints(m)], p["flops_per_s"], batch_size=batch_size,
                              seconds=seconds, device=device, precision=precision, compile=compile, repeats=repeats,
                              recipes=recipes)
    _report("trainer", p, rows, out, ["recipe", "n", "m", "batch_size", "steps", "precision", "tokens_per_s",
                                      "flops_per_s", "peak_flops_per_s", "fraction_of_peak",
                                      "steady_fraction_of_peak", "vs_first_recipe"])


@app.command()
def stacking(n: int = 64, m: int = 512, batch_size: int = 1024, ks: str = "1,4,8,16", device: str = "cpu",
             precision: str = "fp32", seconds: float = 2.0, repeats: int = 2, out: Path = OUT) -> None:
    """Throughput of K stacked runs over the same K runs trained one after another (best of repeats)."""
    from benchmarks.stacking import stacking_speedup
    p = _peak(device, precision)
    rows = stacking_speedup(n, m, batch_size, _ints(ks), p["flops_per_s"], seconds=seconds, device=device,
                            precision=precision, repeats=repeats)
    _report("stacking", p, rows, out, ["n", "m", "batch_size", "K", "steps", "sequential_wall_s", "stacked_wall_s",
                                       "speedup", "sequential_fraction_of_peak", "stacked_fraction_of_peak"])


@app.command()
def loader(n: int = 384, m: int = 4096, batch_size: int = 4096, steps: int = 200, out: Path = OUT) -> None:
    """Rows/s the data path delivers over the tokens/s training consumes at the same shape."""
    from benchmarks.loader import loader_throughput
    p = _peak("cpu", "fp32")
    _report("loader", p, loader_throughput(n, m, batch_size, steps), out,
            ["n", "m", "batch_size", "mode", "loader_rows_per_s", "train_tokens_per_s", "loader_over_training"])


class Peer(str, Enum):
    """The peer libraries `peer` can compare against."""

    dictionary_learning = "dictionary-learning"
    saelens = "saelens"


@app.command()
def peer(n: str = "64,384", m: str = "512,4096", batch_size: int = 4096, steps: int = 40,
         peer: Peer = typer.Option(Peer.dictionary_learning, "--peer", help="the peer library"),
         install_peer: bool = typer.Option(False, help="install the peer first: dictionary-learning into benchmarks/.peer, "
                                                        "SAELens into its own venv benchmarks/.peer/saelens"),
         out: Path = OUT) -> None:
    """saescale's trainer against a peer's April-2024 ReLU SAE at equal shapes, steps and data (CPU)."""
    from benchmarks.peer import PEERS, peer_comparison
    try:
        PEERS[peer.value][0](install_peer)       # a missing peer fails before any measurement
    except PeerNotInstalled as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    p = _peak("cpu", "fp32")
    rows = [peer_comparison(a, b, batch_size, steps, peer=peer.value, install=install_peer)
            for a in _ints(n) for b in _ints(m)]
    _report(f"peer-{peer.value}", p, rows, out, ["n", "m", "batch_size", "steps", "ours_wall_s", "peer_wall_s",
                                                "speedup_vs_peer", "ours_eval_loss", "peer_eval_loss"])


@app.command()
def sweep(spec: Path = Path("sweeps/specs/quickstart.yaml"), results: Optional[Path] = None,
          gpus: Annotated[float, typer.Option(help="override resources.gpus per pack (0: the spec's); "
                                                   "the peak is then the GPU's fp32 peak")] = 0.0,
          out: Path = OUT) -> None:
    """Quickstart sweep efficiency: run FLOPs over (wall x peak), and orchestration seconds per run."""
    from benchmarks.sweep import sweep_efficiency
    p = _peak("cuda" if gpus > 0 else "cpu", "fp32")
    row = sweep_efficiency(spec, p["flops_per_s"], results, gpus=gpus)
    _report("sweep", p, [row], out, ["gpus_per_pack", "runs", "packs", "slots", "wall_s", "ray_start_s", "train_wall_s",
                                     "eval_wall_s", "total_flops", "efficiency", "overhead_s_per_run"])


@app.command()
def slots(spec: Path = Path("sweeps/specs/quickstart.yaml"), packs: int = 6, out: Path = OUT) -> None:
    """Where a sweep slot's time goes per pack (start-up, training, eval), with a fresh vs a kept batch stream."""
    from benchmarks.slots import slot_breakdown
    p = _peak("cpu", "fp32")
    _report("slots", p, slot_breakdown(spec, packs), out,
            ["mode", "packs", "wall_s_per_pack", "first_step_s_per_pack", "steady_train_s_per_pack",
             "eval_s_per_pack", "other_s_per_pack", "eval_share", "startup_share"])


@app.command()
def bookkeeping(runs: str = "1000,10000", bootstrap: Annotated[int, typer.Option(help="bootstrap resamples of the fit")] = 20,
                out: Path = OUT) -> None:
    """Plan, record, compact, status and fit: milliseconds per run for N fabricated finished runs (no training)."""
    from benchmarks.bookkeeping import bookkeeping_row
    p = _peak("cpu", "fp32")
    rows = [bookkeeping_row(r, bootstrap) for r in _ints(runs)]
    _report("bookkeeping", p, rows, out, ["runs", "record_method", "plan_ms_per_run", "record_ms_per_run",
                                          "compact_ms_per_run", "status_ms_per_run", "fit_ms_per_run",
                                          "record_plus_compact_ms_per_run"])


@app.command("all")
def all_(device: str = "cpu", install_peer: bool = False, out: Path = OUT) -> None:
    """Every benchmark at its default settings (the peer only when installed or --install-peer)."""
    peak(device=device, out=out)
    trainer(device=device, out=out)
    stacking(device=device, out=out)
    loader(out=out)
    if device == "cpu":
        from benchmarks.peer import PEERS

        for name in Peer:
            try:
                PEERS[name.value][0](install_peer)
            except PeerNotInstalled as exc:   # the peer is not installed: say so and go on with the rest
                print(f"peer {name.value}: skipped ({exc})")
                continue
            peer(peer=name, out=out, install_peer=install_peer)
        sweep(out=out)
        slots(out=out)
        bookkeeping(out=out)


if __name__ == "__main__":
    app()
