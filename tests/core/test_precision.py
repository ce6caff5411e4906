"""Precision options: bf16 autocast stays close to fp32 and is part of the run's identity; compile matches."""

import pytest

from sae_core.errors import UserError
from sae_core.config import RunConfig
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.train import TrainOptions, train

CFG = SyntheticConfig(n=32, m_true=64, tokens=100_000, mean_active=3.0, zipf_exponent=0.5)


@pytest.fixture(scope="module")
def store(cache_dir):
    return synthetic_store(CFG, cache_dir)


@pytest.mark.parametrize("recipe", ["anthropic-2024-04", "anthropic-2025-02"])
def test_bf16_autocast_close_to_fp32(store, recipe):
    base = dict(m=64, steps=150, batch_size=256, lr=3e-3, lam=1.0)
    fp32 = train(RunConfig(recipe, **base), store)
    bf16 = train(RunConfig(recipe, **base, hparams={"precision": "bf16"}), store)
    assert bf16.status == "ok"
    assert bf16.metrics["loss"] == pytest.approx(fp32.metrics["loss"], rel=0.05)
    assert bf16.run.key() != fp32.run.key() and bf16.row()["hp_precision"] == "bf16"


def test_unknown_precision_is_user_error():
    with pytest.raises(UserError, match="precision"):
        RunConfig("anthropic-2024-04", m=8, steps=2, hparams={"precision": "fp8"}).resolve()


@pytest.mark.slow
def test_compiled_forward_matches_eager(store):
    run = RunConfig("anthropic-2024-04", m=64, steps=100, batch_size=256, lr=3e-3, lam=1.0)
    eager = train(run, store)
    compiled = train(run, store, TrainOptions(compile=True))
    assert compiled.metrics["loss"] == pytest.approx(eager.metrics["loss"], rel=1e-3)
