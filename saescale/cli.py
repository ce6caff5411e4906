"""The `saescale` console script: a thin typer app whose subcommands delegate to the packages.

Heavy imports (torch, ray, scipy) happen inside the commands, so `saescale fit-table` never
loads torch and `--help` is instant.
"""

from __future__ import annotations

import signal
import sys

import typer
from typer.exceptions import TyperException

from saescale import signals
from saescale.commands import activations, analysis, compare, sweep, train
from sae_core.errors import StorageError, UserError

app = typer.Typer(
    name="saescale",
    help="Scaling-law sweeps for sparse autoencoders: train, sweep, fit, recommend.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
train.register(app)
sweep.register(app)
analysis.register(app)
compare.register(app)
activations.register(app)


@app.callback()
def _root() -> None:
    """Scaling-law sweeps for sparse autoencoders: train, sweep, fit, recommend."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI with the exit-code policy of saescale.signals (bad input: one `error:` line, exit 2)."""
    command = typer.main.get_command(app)
    signals.install()
    try:
        code = command.main(args=argv, prog_name="saescale", standalone_mode=False)
    except signals.Interrupted as exc:
        _exit(signals.INTERRUPTED_LINE, exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _exit(signals.INTERRUPTED_LINE, 130)
    except StorageError as exc:
        _exit(f"error: {exc}", signals.EXIT_STORAGE)
    except UserError as exc:
        _exit(f"error: {exc}", signals.EXIT_USER_ERROR)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except TyperException as exc:  # usage errors: unknown option, bad value, missing argument
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.ctx.get_help())
            sys.exit(0)
        _exit(f"error: {exc.format_message()}", exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _exit(line: str, code: int) -> None:
    """Print one line on stderr and exit; later signals during interpreter exit cannot add a traceback."""
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)
