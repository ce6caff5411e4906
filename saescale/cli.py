"""The `saescale` console script: a thin typer app whose subcommands delegate to the packages.

Heavy imports (torch, ray, scipy) happen inside the commands, so `saescale fit-table` never
loads torch and `--help` is instant.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from saescale.commands import activations, analysis, compare, sweep, train
from sae_core.errors import UserError

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
    """Run the CLI; bad input ends in one `error: ...` line on stderr and exit status 2."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="saescale", standalone_mode=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted (rerun the same command to resume)", file=sys.stderr)
        sys.exit(130)
    except TyperException as exc:  # usage errors: unknown option, bad value, missing argument
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.ctx.get_help())
            sys.exit(0)
        print(f"error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
