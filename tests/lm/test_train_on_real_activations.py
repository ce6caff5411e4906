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


def test_downstream_columns_at_the_end_of_training(minilm_store):
    """TrainOptions.downstream_windows scores every run of a pack; a diverged run gets NaN and a reason."""
    from sae_core.config import RunConfig
    from sae_core.train import TrainOptions, train_pack

    runs = [RunConfig("anthropic-2024-04", m=128, steps=20, batch_size=256, lr=1e-3),
            RunConfig("anthropic-2024-04", m=128, steps=20, batch_size=256, lr=1e25)]
    ok, bad = train_pack(runs, minilm_store, TrainOptions(downstream_windows=2))
    assert ok.status == "ok" and bad.status == "diverged"
    assert -1.0 <= ok.metrics["emb_cos_recovered"] < 1.0 and ok.metrics["downstream_skipped"] == ""
    assert ok.metrics["downstream_windows"] == 2.0 and math.isnan(ok.metrics["ce_recovered_zero"])
    assert math.isnan(bad.metrics["emb_cos_recovered"]) and bad.metrics["downstream_skipped"] == "run diverged"


def test_downstream_on_synthetic_data_is_skipped_with_a_reason(tmp_path):
    from sae_core.config import RunConfig
    from sae_core.synthetic import SyntheticConfig, synthetic_store
    from sae_core.train import TrainOptions, train

    store = synthetic_store(SyntheticConfig(n=8, m_true=16, tokens=4096), tmp_path)
    r = train(RunConfig("anthropic-2024-04", m=16, steps=3, batch_size=64), store, TrainOptions(downstream_windows=4))
    assert math.isnan(r.metrics["emb_cos_recovered"]) and "synthetic" in r.metrics["downstream_skipped"]
