"""benchmarks/gpu_check.sh's argument handling, on CPU: --dry-run prints the three measurements the
issue asks for, each a command the benchmark CLI accepts (options parsed, not run); bad arguments exit 2."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
import typer

import benchmarks.__main__ as cli

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def _options(argv: list[str]) -> dict[str, str]:
    return {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}


def test_dry_run_prints_the_three_measurements(tmp_path: Path) -> None:
    proc = _script("--dry-run", "--out", str(tmp_path / "gpu"), "--python", "py3", "--seconds", "2.5")
    assert proc.returncode == 0, proc.stderr
    lines = [shlex.split(line) for line in proc.stdout.splitlines()]
    assert [argv[:4] for argv in lines] == [["py3", "-m", "benchmarks", c] for c in ("trainer", "stacking", "sweep")]
    trainer, stacking, sweep = (_options(argv) for argv in lines)
    assert trainer["--device"] == "cuda" and trainer["--precision"] == "bf16" and trainer["--seconds"] == "2.5"
    assert trainer["--n"] == "768,2048" and trainer["--m"] == "16384,65536"
    assert (stacking["--n"], stacking["--m"], stacking["--ks"]) == ("64", "512", "1,8")
    assert sweep["--gpus"] == "0.25"
    assert all(_options(argv)["--out"] == str(tmp_path / "gpu") for argv in lines)
    assert not (tmp_path / "gpu").exists()   # a dry run writes nothing


def test_dry_run_commands_parse_in_the_benchmark_cli() -> None:
    group = typer.main.get_command(cli.app)
    for line in _script("--dry-run").stdout.splitlines():
        argv = shlex.split(line)[3:]
        command = group.commands[argv[0]]
        ctx = command.make_context(argv[0], argv[1:])   # raises on an unknown option or a bad value
        assert ctx.params["out"] == Path("benchmarks/out/gpu")


@pytest.mark.parametrize("args", [["--bogus"], ["--out"], ["--seconds", "fast"]])
def test_bad_arguments_exit_2(args: list[str]) -> None:
    proc = _script(*args)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stdout == ""
