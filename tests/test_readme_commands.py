"""Every command README.md shows exists: `saescale ...` and `python -m benchmarks ...` subcommands answer
`--help`, and `make X` targets are in the Makefile. So a README command cannot silently rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import benchmarks.__main__ as bench_cli
from saescale.cli import app as saescale_app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SAESCALE = re.compile(r"(?:^|[\s'\"(]|bin/)saescale((?:[ \t]+[a-z][\w-]*){1,2})")
BENCH = re.compile(r"python -m benchmarks((?:[ \t]+[^\s`|&;]+)*)")
MAKE = re.compile(r"(?:^|[\s`(&;])make((?:[ \t]+[^\s`|&;#]+)*)")


def code_spans(text: str) -> list[str]:
    """The contents of fenced code blocks and of inline `code` spans (prose mentions are not commands)."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return fenced + re.findall(r"`([^`\n]+)`", rest)


def saescale_commands(text: str) -> set[tuple[str, ...]]:
    """Command paths after `saescale` in code: ('sweep', 'run'), ('fit',), ... (the words up to two deep)."""
    return {tuple(m.group(1).split()) for span in code_spans(text) for m in SAESCALE.finditer(span)}


def bench_commands(text: str) -> set[str]:
    """Subcommands after `python -m benchmarks` in code (options and their numeric values skipped); '' for none."""
    found = set()
    for span in code_spans(text):
        for m in BENCH.finditer(span):
            words = [w for w in m.group(1).split() if not w.startswith("-") and not re.fullmatch(r"[\d.,]+", w)]
            found.add(words[0] if words else "")
    return found


def make_targets(text: str) -> set[str]:
    """Targets of `make ...` in code (variable assignments like TORCH_SPEC=... skipped)."""
    return {w for span in code_spans(text) for m in MAKE.finditer(span) for w in m.group(1).split() if "=" not in w}


def resolve(app: typer.Typer, words: tuple[str, ...]) -> list[str]:
    """The command path `words` names in `app` (a group's subcommand taken when present); fails if the first is unknown.

    (typer vendors click, so groups are recognised by their `commands` mapping, not by click.Group.)"""
    command = typer.main.get_command(app)
    path: list[str] = []
    for word in words:
        if word not in getattr(command, "commands", {}):
            break
        command = command.commands[word]
        path.append(word)
    assert path, f"README shows `saescale {' '.join(words)}`, but saescale has no command {words[0]!r}"
    assert not hasattr(command, "commands"), f"README shows `saescale {' '.join(words)}`: no such subcommand"
    return path


def test_parsers_find_known_commands() -> None:
    text = ("x\n```\nsaescale sweep run a.yaml\n.venv/bin/saescale fit r\ncd ~/saescale && make demo\n"
            "python -m benchmarks --threads 1 stacking\n```\n`saescale recipes` and saescale prose, "
            "`make TORCH_SPEC=x venv`, `python -m benchmarks`\n")
    assert saescale_commands(text) == {("sweep", "run", ), ("fit", "r"), ("recipes",)}
    assert bench_commands(text) == {"stacking", ""}
    assert make_targets(text) == {"demo", "venv"}


def test_readme_shows_commands() -> None:
    assert len(saescale_commands(README)) >= 5 and "trainer" in bench_commands(README) and "demo" in make_targets(README)


@pytest.mark.parametrize("words", sorted(saescale_commands(README)), ids=" ".join)
def test_saescale_command_exists(words: tuple[str, ...]) -> None:
    path = resolve(saescale_app, words)
    result = CliRunner().invoke(saescale_app, [*path, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output, result.output


@pytest.mark.parametrize("command", sorted(bench_commands(README)))
def test_benchmarks_command_exists(command: str) -> None:
    result = CliRunner().invoke(bench_cli.app, [command, "--help"] if command else ["--help"])
    assert result.exit_code == 0 and "Usage" in result.output, result.output


def test_make_targets_exist() -> None:
    defined = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    assert make_targets(README) <= defined, make_targets(README) - defined


PYTHON = re.compile(r"python (-m [a-z_][\w.]*|scripts/[\w/]+\.py)")


def python_commands(text: str) -> set[str]:
    """`python -m module` (other than benchmarks, checked above) and `python scripts/x.py` shown in code."""
    return {m.group(1) for span in code_spans(text) for m in PYTHON.finditer(span)} - {"-m benchmarks"}


def test_python_parser() -> None:
    text = "```\npython -m analysis.coverage_phase2 --draws 2\npython -m benchmarks all\n```\n`python scripts/m.py --x`"
    assert python_commands(text) == {"-m analysis.coverage_phase2", "scripts/m.py"}


@pytest.mark.parametrize("command", sorted(python_commands(README)))
def test_python_command_answers_help(command: str) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, *command.split(), "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "usage" in result.stdout.lower(), result.stderr[-2000:]
