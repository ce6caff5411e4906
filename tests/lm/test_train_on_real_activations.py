"""A real MiniLM store trains with `saescale train`, and the exported SAE scores downstream."""

from __future__ import annotations

import json
import math

import pytest

from sae_core.export import load_sae
from sae_core.lm.downstream import downstream_metrics
from saescale.cli import main


def test_saescale_train_on_a_real_minilm_store(minilm, minilm_store, tmp_path, capsys):
    export = tmp_path / "sae"
    argv = ["train", "--recipe", "anthropic-2024-04", "--source", str(minilm_store.path),
            "--m", "256", "--steps", "30", "--batch-size", "256", "--json", "--export", str(export)]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    row = json.loads(out)
    assert row["status"] == "ok" and row["store_hash"] == minilm_store.content_hash
    assert all(math.isfinite(row[k]) for k in ("loss", "mse", "l0"))
    assert row["l0"] > 0
    # the exported SAE works in raw activation units: splice it into MiniLM
    metrics = downstream_metrics(minilm_store, load_sae(export), model=minilm, windows=2)
    assert math.isfinite(metrics["emb_cos_recovered"]) and metrics["emb_cos_recovered"] < 1.0
