#!/usr/bin/env python3
"""Run a saescale sweep on the Ray cluster of the node this script runs on.

    ray submit [--tmux] cluster/sweep.yaml cluster/run_sweep.py -- SPEC [--results DIR] [--force]

`ray submit` uploads only this file (to ~ on the head) and runs it there with cwd $HOME; the
project was mounted at ~/saescale and installed by the cluster YAML. This script moves into the
project directory (so SPEC, --results and store paths mean what they mean on your laptop), puts
the project on sys.path if it is not installed, and runs `saescale sweep run` with
`--address auto` (or $RAY_ADDRESS): the cluster already running on this node.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def project_dir() -> Path:
    """$SAESCALE_PROJECT, else ~/saescale (the cluster mount), else the checkout holding this file."""
    for candidate in (os.environ.get("SAESCALE_PROJECT"), "~/saescale", Path(__file__).resolve().parents[1]):
        if candidate and (Path(candidate).expanduser() / "saescale").is_dir():
            return Path(candidate).expanduser().resolve()
    raise SystemExit("error: cannot find the saescale project (set SAESCALE_PROJECT)")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    root = project_dir()
    os.chdir(root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if not any(a == "--address" or a.startswith("--address=") for a in args):
        args += ["--address", os.environ.get("RAY_ADDRESS") or "auto"]
    from saescale.cli import main as cli

    cli(["sweep", "run", *args])


if __name__ == "__main__":
    main()
