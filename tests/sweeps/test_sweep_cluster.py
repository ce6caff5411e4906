"""The cluster YAMLs pass Ray's own schema and config validation offline (no cloud, no SSH)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import click
import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).parents[2] / "cluster"
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _schema_errors(cfg: dict) -> list[str]:
    return [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(cfg)]


def _ray_validate(cfg: dict) -> dict:
    """What `ray up` does before touching any machine: fill defaults, then validate."""
    full = prepare_config(copy.deepcopy(cfg))
    validate_config(full)
    return full


@pytest.mark.parametrize("name", ["sweep.yaml", "onprem.yaml"])
def test_cluster_yaml_is_valid(name: str) -> None:
    cfg = yaml.safe_load((CLUSTER / name).read_text())
    assert _schema_errors(cfg) == []
    full = _ray_validate(cfg)
    assert full["file_mounts"]["~/saescale"] == "."
    assert any("pip install" in c and "-e ~/saescale" in c for c in full["setup_commands"])


def test_aws_cluster_has_autoscaled_gpu_workers() -> None:
    cfg = yaml.safe_load((CLUSTER / "sweep.yaml").read_text())
    workers = cfg["available_node_types"]["gpu_worker"]
    assert cfg["provider"]["type"] == "aws" and workers["resources"]["GPU"] >= 1
    assert workers["min_workers"] == 0 < workers["max_workers"]
    assert cfg["available_node_types"][cfg["head_node_type"]]["resources"] == {"CPU": 0}


@pytest.mark.parametrize("name", ["sweep.yaml", "onprem.yaml"])
def test_typo_key_is_caught(name: str) -> None:
    cfg = yaml.safe_load((CLUSTER / name).read_text())
    cfg["setup_command"] = cfg.pop("setup_commands")
    assert any("setup_command" in e for e in _schema_errors(cfg))
    with pytest.raises((jsonschema.ValidationError, click.ClickException, ValueError)):
        _ray_validate(cfg)


def test_fractional_node_gpus_are_caught() -> None:
    cfg = yaml.safe_load((CLUSTER / "sweep.yaml").read_text())
    cfg["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.25
    assert _schema_errors(cfg)
    with pytest.raises(jsonschema.ValidationError):
        _ray_validate(cfg)
