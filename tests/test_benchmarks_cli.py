"""`python -m benchmarks <cmd>` runs every subcommand end to end at toy sizes: a table on stdout, its JSON in --out.

The subcommands are enumerated from the typer app, so a new one fails here until it has toy
arguments below. Speeds are never asserted; the JSON's arithmetic is checked where it is cheap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml

import benchmarks.__main__ as cli

ROOT = Path(__file__).resolve().parents[1]
TOY_PEAK = ["--peak-sizes", "64", "--peak-seconds", "0.02"]
TOY_SWEEP = {"name": "toy", "recipe": "anthropic-2024-04", "batch_size": 64,
             "activations": {"source": "synthetic", "n": 16, "true_features": 64, "tokens": 8192, "seed": 0},
             "design": {"kind": "grid", "features": [32], "steps": [10]}, "lr": [1e-2, 3e-2], "lambda": [1.0],
             "seeds": [0], "eval_max_rows": 256, "resources": {"cpus": 1, "gpus": 0}}
TOY_ARGS: dict[str, list[str]] = {
    "peak": [],
    "trainer": ["--n", "16", "--m", "32", "--batch-size", "64", "--seconds", "0.01", "--repeats", "1",
                "--recipe", "anthropic-2024-04,anthropic-2025-02"],
    "stacking": ["--n", "16", "--m", "32", "--batch-size", "64", "--ks", "1,2", "--seconds", "0.01", "--repeats", "1"],
    "loader": ["--n", "16", "--m", "32", "--batch-size", "64", "--steps", "3"],
    "sweep": ["--spec", "{spec}"],
    "bookkeeping": ["--runs", "16", "--bootstrap", "0"],
    "slots": ["--spec", "{spec}", "--packs", "1"],
}
HELP_ONLY = {"peer": "needs the peer library, installed only on request into benchmarks/.peer",
             "all": "runs every other command at full size; test_all_calls_every_command checks its composition"}


def _commands() -> list[str]:
    return sorted(typer.main.get_command(cli.app).commands)


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAESCALE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "benchmarks", "--threads", "1", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_command_is_covered() -> None:
    assert set(_commands()) == set(TOY_ARGS) | set(HELP_ONLY)


@pytest.mark.parametrize("command", sorted(TOY_ARGS))
def test_command_prints_a_table_and_writes_json(command: str, tmp_path: Path) -> None:
    spec = tmp_path / "toy.yaml"
    spec.write_text(yaml.safe_dump(TOY_SWEEP))
    out = tmp_path / "out"
    args = [a.format(spec=spec) for a in TOY_ARGS[command]]
    proc = _run([*TOY_PEAK, command, *args, "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{command}: peak" in proc.stdout and "┃" in proc.stdout, proc.stdout   # the rich table's title and header
    (written,) = out.glob(f"{command}-*.json")
    content = json.loads(written.read_text())
    assert content["benchmark"] == command and content["rows"] and content["peak"]["flops_per_s"] > 0
    if command == "trainer":   # two recipes interleaved at one shape; the first is the reference
        assert [r["recipe"] for r in content["rows"]] == ["anthropic-2024-04", "anthropic-2025-02"]
        first, second = content["rows"]
        assert first["vs_first_recipe"] == 1.0
        assert second["vs_first_recipe"] == pytest.approx(second["steady_fraction_of_peak"]
                                                          / first["steady_fraction_of_peak"])
    if command == "slots":   # both modes trained the same pack; shares are fractions of its wall
        assert [r["mode"] for r in content["rows"]] == ["fresh", "kept"]
        assert all(0 <= r["eval_share"] <= 1 and r["packs"] == 1 for r in content["rows"])
    if command == "bookkeeping":   # k = ceil(sqrt(16 / 4)) = 2 features x 2 steps x 4 lrs = 16 runs
        (row,) = content["rows"]
        assert row["runs"] == 16
        assert all(row[f"{s}_ms_per_run"] > 0 for s in ("plan", "record", "compact", "status", "fit"))


@pytest.mark.parametrize("command", sorted(HELP_ONLY))
def test_help_only_command_has_help(command: str, tmp_path: Path) -> None:
    proc = _run([command, "--help"], tmp_path)
    assert proc.returncode == 0 and "Usage" in proc.stdout, proc.stderr


def _fake_peers(monkeypatch: pytest.MonkeyPatch, ensure) -> None:
    from benchmarks import peer as peer_module

    monkeypatch.setattr(peer_module, "PEERS", {name: (ensure, run) for name, (_, run) in peer_module.PEERS.items()})


def test_all_calls_every_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    called = []
    for name in set(_commands()) - {"all"}:
        monkeypatch.setattr(cli, name, lambda *a, _name=name, **k: called.append(_name))
    _fake_peers(monkeypatch, lambda install: None)        # both peers installed
    cli.all_(out=tmp_path)
    assert set(called) == set(_commands()) - {"all"}   # peer runs once per peer library
    assert called.count("peer") == 2


def test_all_skips_a_missing_peer_and_runs_the_rest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import PeerNotInstalled

    called = []
    for name in set(_commands()) - {"all"}:
        monkeypatch.setattr(cli, name, lambda *a, _name=name, **k: called.append(_name))

    def missing(install: bool) -> None:
        raise PeerNotInstalled("peer not installed; rerun with --install-peer")

    _fake_peers(monkeypatch, missing)
    cli.all_(out=tmp_path)
    assert set(called) == set(_commands()) - {"all", "peer"}
    assert capsys.readouterr().out.count("skipped (peer not installed") == 2
