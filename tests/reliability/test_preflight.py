"""Malformed and impossible specs are refused before any side effect: one `error:` line naming the
field, exit 2, no results directory, no generated store, Ray never started."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.reliability.conftest import cli
from tests.sweeps.conftest import TINY_SPEC

BASE = yaml.safe_dump(TINY_SPEC, sort_keys=False)

# (name, spec YAML text, a substring the one error line must contain)
def _edit(**fields: object) -> str:
    spec = yaml.safe_load(BASE)
    for dotted, value in fields.items():
        node = spec
        *path, last = dotted.split("__")
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return yaml.safe_dump(spec, sort_keys=False)


def _raw(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


CASES = [
    ("budgets_inf", _edit(design={"kind": "isoflop", "budgets": [float("inf")], "features": [32]}), "design.budgets.0"),
    ("budgets_nan", _edit(design={"kind": "isoflop", "budgets": [float("nan")], "features": [32]}), "design.budgets.0"),
    ("budgets_overflow", _edit(design={"kind": "isoflop", "budgets": ["1e400"], "features": [32]}), "design.budgets.0"),
    ("budgets_negative", _edit(design={"kind": "isoflop", "budgets": [-1.0], "features": [32]}), "design.budgets.0"),
    ("lr_inf", _edit(lr=[float("inf")]), "lr"),
    ("lr_nan", _edit(lr=[float("nan")]), "lr"),
    ("lr_bool", _edit(lr=[True]), "lr"),
    ("lambda_inf", _edit(**{"lambda": [float("inf")]}), "lambda.0"),
    ("features_bool", _edit(design__features=[True]), "design.features.0"),
    ("features_fraction", _edit(design__features=[1.5]), "design.features.0"),
    ("features_text", _edit(design__features=["many"]), "design.features.0"),
    ("steps_bool", _edit(design__steps=[False]), "design.steps.0"),
    ("steps_zero", _edit(design__steps=[0]), "design.steps.0"),
    ("seeds_bool", _edit(seeds=[True]), "seeds.0"),
    ("batch_bool", _edit(batch_size=True), "batch_size"),
    ("retries_negative", _edit(retries=-1), "retries"),
    ("retries_fraction", _edit(retries=1.5), "retries"),
    ("checkpoint_text", _edit(checkpoint_every="often"), "checkpoint_every"),
    ("eval_rows_fraction", _edit(eval_max_rows=2.5), "eval_max_rows"),
    ("mean_active_inf", _edit(activations__mean_active=float("inf")), "activations.mean_active"),
    ("coupling_above_1", _edit(activations__group_coupling=2.0), "activations.group_coupling"),
    ("n_bool", _edit(activations__n=True), "activations.n"),
    ("memory_nan", _edit(packing={"memory_gb": float("nan")}), "packing.memory_gb"),
    ("max_runs_zero", _edit(packing={"max_runs": 0}), "packing.max_runs"),
    ("hparams_inf", _edit(hparams={"init_norm": float("inf")}), "hparams"),
    ("optuna_inf", _edit(lr={"search": "optuna", "low": 1e-4, "high": float("inf"), "trials": 2}), "lr.high"),
    ("optuna_order", _edit(lr={"search": "optuna", "low": 1e-2, "high": 1e-4, "trials": 2}), "low must be < high"),
    ("unknown_field", _edit(colour="blue"), "colour: unknown field"),
    ("bad_name", _edit(name="a/b"), "name"),
    ("bad_source", _edit(activations={"source": "magic"}), "activations.source"),
    ("bad_kind", _edit(design={"kind": "spiral"}), "design.kind"),
    ("duplicate_top_key", BASE + "lr: [0.5]\n", "duplicate key 'lr'"),
    ("duplicate_nested_key", _raw("  kind: grid\n", "  kind: grid\n  kind: isoflop\n"), "duplicate key 'kind'"),
    ("not_a_mapping", "- just\n- a list\n", "must be a YAML mapping"),
    ("yaml_syntax", "name: [unclosed\n", "invalid YAML"),
    ("tokens_fill_disk", _edit(activations__tokens="1e15"), "activations.tokens"),
    ("true_features_memory", _edit(activations__true_features="1e12"), "activations.true_features"),
    ("features_memory", _edit(design__features=["1e12"]), "design.features"),
    ("cpus_beyond_machine", _edit(resources={"cpus": 4096}), "resources.cpus"),
    ("gpus_beyond_machine", _edit(resources={"cpus": 1, "gpus": 64}), "resources.gpus"),
    ("custom_resource_locally", _edit(resources={"cpus": 1, "custom": {"tpu": 1}}), "resources.custom.tpu"),
]


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to start or connect Ray fails the test."""
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_spec_refused_before_anything(tmp_path: Path, capsys, no_ray, cache_dir: str,
                                                text: str, expected: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    results = tmp_path / "results"
    before = set(os.listdir(cache_dir))
    code = cli("sweep", "run", str(spec), "--results", str(results), "--no-progress")
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert not results.exists()
    new = set(os.listdir(cache_dir)) - before   # only the tiny spec's own finished store may appear
    assert all((Path(cache_dir) / p / "meta.json").is_file() for p in new), new
    if "activations." in expected:
        assert not new


@pytest.mark.parametrize("where", ["file", "below_file"])
def test_results_on_a_file_is_refused(tmp_path: Path, capsys, no_ray, where: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(BASE)
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    results = blocker if where == "file" else blocker / "sub" / "results"
    code = cli("sweep", "run", str(spec), "--results", str(results))
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: --results ") and "is a file" in lines[0]
    assert blocker.read_text() == "not a directory"


def test_read_only_results_location_is_a_storage_error(tmp_path: Path, capsys, no_ray,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import sweeps.preflight

    spec = tmp_path / "spec.yaml"
    spec.write_text(BASE)
    real_access = os.access
    monkeypatch.setattr(sweeps.preflight.os, "access",  # tmp_path as on a read-only mount
                        lambda path, mode, **kw: False if Path(path) == tmp_path else real_access(path, mode, **kw))
    code = cli("sweep", "run", str(spec), "--results", str(tmp_path / "ro" / "results"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 74, lines and len(lines) == 1 and "not writable" in lines[0] and str(tmp_path) in lines[0]
    assert not (tmp_path / "ro").exists()
