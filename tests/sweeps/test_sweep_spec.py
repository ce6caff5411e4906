"""Spec validation: malformed specs fail before anything runs, with one line naming the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from saescale.cli import main
from sae_core.errors import UserError
from sweeps import load_spec, run_sweep
from sweeps.spec import SweepSpec

ISSUE_EXAMPLE = """
name: quickstart
activations: {source: synthetic, n: 64, true_features: 512, tokens: 1000000, seed: 0}
recipe: anthropic-2024-04
batch_size: 512
design: {kind: grid, features: [128, 256, 512], steps: [200, 400]}
lr: [1.0e-3, 3.0e-3]
lambda: [5.0]
seeds: [0]
resources: {cpus: 1, gpus: 0}
retries: 2
"""


def test_issue_example_and_alternatives_parse(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(ISSUE_EXAMPLE)
    spec = load_spec(path)
    assert spec.design.features == [128, 256, 512] and spec.lam == [5.0] and spec.lr == [1e-3, 3e-3]
    raw = yaml.safe_load(ISSUE_EXAMPLE)
    raw["activations"] = {"source": "store", "path": "activations/minilm_l3"}
    raw["design"] = {"kind": "isoflop", "budgets": ["1e11", 3e11, 1e12], "features": [64, 128, 256, 512, 1024]}
    raw["lr"] = {"search": "optuna", "low": "1e-5", "high": 1e-1, "trials": 8}
    raw["resources"] = {"cpus": 1, "gpus": 0.25}
    spec = load_spec(raw)
    assert spec.design.budgets == [1e11, 3e11, 1e12]  # PyYAML reads 1e11 as a string: coerced
    assert spec.lr_search is not None and spec.lr_search.low == 1e-5


def test_shipped_quickstart_parses() -> None:
    spec = load_spec(Path(__file__).parents[2] / "sweeps" / "specs" / "quickstart.yaml")
    assert spec.name == "quickstart"


def test_spec_hash_ignores_execution_fields_and_search_effort(tiny_spec) -> None:
    base = load_spec(tiny_spec()).spec_hash()
    assert load_spec(tiny_spec(retries=5, resources={"cpus": 2}, packing={"max_runs": 1})).spec_hash() == base
    assert load_spec(tiny_spec(seeds=[0, 1])).spec_hash() != base
    search = {"search": "optuna", "low": 1e-4, "high": 1e-2, "trials": 2}
    assert (load_spec(tiny_spec(lr=search)).spec_hash()
            == load_spec(tiny_spec(lr={**search, "trials": 9, "parallel": 3})).spec_hash())


MALFORMED = [
    ({"design": {"kind": "grid", "features": [32], "steps": [20], "stepz": [1]}}, "design.stepz: unknown field"),
    ({"colour": "red"}, "colour: unknown field"),
    ({"batch_size": "big"}, "batch_size: must be an integer"),
    ({"design": {"kind": "isoflop", "budgets": [-1e11, 1e12], "features": [64]}}, "design.budgets.0:"),
    ({"design": {"kind": "grid", "features": [], "steps": [20]}}, "design.features:"),
    ({"lr": []}, "lr:"),
    ({"design": {"kind": "grid", "features": [32, 32], "steps": [20]}}, "design.features: values must be distinct"),
    ({"lambda": [-1.0]}, "lambda.0:"),
    ({"design": {"kind": "spiral"}}, "design.kind:"),
    ({"lr": {"search": "optuna", "low": 1e-2, "high": 1e-4, "trials": 4}}, "lr: low must be < high"),
    ({"resources": {"gpus": 1.5}}, "resources.gpus:"),
    ({"hparams": {"nope": 1}}, "hparams: unknown hyperparameter 'nope'"),
    ({"activations": {"source": "store", "path": "/nonexistent/store"}},
     "activations.path: activation store not found"),
    ({"batch_size": 100000}, "batch_size: 100000 exceeds"),
]


@pytest.mark.parametrize(("change", "expected"), MALFORMED)
def test_malformed_spec_fails_before_anything_runs(tmp_path: Path, tiny_spec, change, expected) -> None:
    results = tmp_path / "results"
    with pytest.raises(UserError) as info:
        run_sweep(tiny_spec(**change), results)
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert not results.exists()  # nothing written, nothing started


def test_n_mismatch_with_store(tmp_path: Path, tiny_spec) -> None:
    from sweeps.data import resolve_data

    store, _ = resolve_data(load_spec(tiny_spec()))
    with pytest.raises(UserError, match=r"activations\.n: spec says n=32 but store .* has n=16"):
        run_sweep(tiny_spec(activations={"source": "store", "path": str(store.path), "n": 32}), tmp_path / "r")


def test_infeasible_isoflop_points_are_named(tmp_path: Path, tiny_spec) -> None:
    from sweeps.data import resolve_data
    from sweeps.plan import build_plan

    spec = load_spec(tiny_spec(design={"kind": "isoflop", "budgets": [3e7], "features": [8, 64, 4096]}))
    plan = build_plan(spec, *resolve_data(spec))
    assert [c.config.m for c in plan.cells] == [8, 64]
    assert len(plan.dropped) == 1 and "budget=3e+07 m=4096" in plan.dropped[0]
    spec = load_spec(tiny_spec(design={"kind": "isoflop", "budgets": [1e3], "features": [64]}))
    with pytest.raises(UserError, match="design: every IsoFLOP point is infeasible"):
        build_plan(spec, *resolve_data(spec))


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return int(info.value.code), out.out, out.err


def test_cli_reports_one_error_line(tmp_path: Path, tiny_spec, capsys) -> None:
    spec = tiny_spec(design={"kind": "isoflop", "budgets": [-5], "features": [64]})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    code, out, err = _cli(["sweep", "run", str(path), "--results", str(tmp_path / "r")], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "design.budgets.0" in err
    code, _, err = _cli(["sweep", "run", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and err.startswith("error: spec file not found")
    path.write_text("name: [unclosed\n")
    code, _, err = _cli(["sweep", "run", str(path)], capsys)
    assert code == 2 and "invalid YAML" in err and err.count("\n") == 1
    code, _, err = _cli(["sweep", "status", str(tmp_path)], capsys)
    assert code == 2 and "no manifest.json" in err


def test_cli_subprocess_has_no_traceback(tmp_path: Path, tiny_spec) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_spec(seeds=["zero"])))
    proc = subprocess.run([sys.executable, "-m", "saescale", "sweep", "run", str(path)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: ") and "seeds.0" in proc.stderr and "Traceback" not in proc.stderr


def test_schema_is_closed() -> None:
    """Every model forbids unknown keys (a typo can never be silently ignored)."""
    from pydantic import BaseModel

    def models(cls: type[BaseModel]) -> set[type[BaseModel]]:
        seen = {cls}
        for f in cls.model_fields.values():
            for arg in _types(f.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    seen |= models(arg)
        return seen

    for model in models(SweepSpec):
        assert model.model_config.get("extra") == "forbid", model


def _types(annotation) -> list:
    from typing import get_args

    out, todo = [], [annotation]
    while todo:
        a = todo.pop()
        out.append(a)
        todo.extend(get_args(a))
    return out
