"""Training: planted-feature recovery, determinism, checkpoint/resume, divergence, stacked packs, export."""

import math
import os
import signal
import threading

import numpy as np
import pytest
import torch

from sae_core.errors import UserError
from sae_core.config import RunConfig
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.train import TrainingInterrupted, TrainOptions, train, train_pack
from sae_core.arch import ARCHS
from sae_core.export import fold_weights, load_sae, export_sae

from .helpers import write_store

SMALL = SyntheticConfig(n=32, m_true=64, tokens=100_000, mean_active=3.0, zipf_exponent=0.5)
TIMING_KEYS = {"wall_s", "train_wall_s", "eval_wall_s", "train_tokens_per_s", "resumed_from_step", "first_step_wall_s"}


@pytest.fixture(scope="module")
def small_store(cache_dir):
    return synthetic_store(SMALL, cache_dir)


def _metrics(result):
    return {k: v for k, v in result.row().items() if k not in TIMING_KEYS}


def test_same_seed_same_result_other_seed_differs(small_store):
    cfg = dict(m=64, steps=60, batch_size=256, lr=3e-3, lam=1.0)
    a = train(RunConfig("anthropic-2024-04", seed=1, **cfg), small_store)
    b = train(RunConfig("anthropic-2024-04", seed=1, **cfg), small_store)
    c = train(RunConfig("anthropic-2024-04", seed=2, **cfg), small_store)
    assert _metrics(a) == _metrics(b)
    assert a.metrics["loss"] != c.metrics["loss"]


@pytest.mark.parametrize("recipe", ["anthropic-2024-04", "anthropic-2025-02"])
def test_sigterm_checkpoint_then_resume_equals_uninterrupted(small_store, tmp_path, recipe):
    run = RunConfig(recipe, m=64, steps=800, batch_size=256, lr=2e-3, lam=1.0)
    full = train(run, small_store)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    with pytest.raises(TrainingInterrupted) as info:
        train(run, small_store, TrainOptions(checkpoint_dir=tmp_path))
    timer.cancel()
    assert 0 < info.value.step < 800 and info.value.checkpointed
    assert list(tmp_path.glob("*.pt"))
    resumed = train(run, small_store, TrainOptions(checkpoint_dir=tmp_path))
    assert resumed.info["resumed_from_step"] == info.value.step
    assert _metrics(resumed) == _metrics(full)
    assert not list(tmp_path.glob("*.pt"))       # removed after success


def test_periodic_checkpoint_is_resumed_and_changed_config_is_not(small_store, tmp_path):
    run = RunConfig("anthropic-2024-04", m=64, steps=100, batch_size=256, lr=2e-3)
    opts = TrainOptions(checkpoint_dir=tmp_path, checkpoint_every=40, keep_checkpoints=True)
    done = train(run, small_store, opts)
    again = train(run, small_store, opts)          # the final checkpoint: nothing left to train
    assert again.info["resumed_from_step"] == 100 and _metrics(again) == _metrics(done)
    other = train(RunConfig("anthropic-2024-04", m=64, steps=100, batch_size=256, lr=1e-3), small_store, opts)
    assert other.info["resumed_from_step"] == 0


def test_diverged_run_is_reported_and_does_not_disturb_its_pack(small_store):
    good = RunConfig("anthropic-2024-04", m=64, steps=50, batch_size=256, lr=3e-3, seed=4)
    bad = RunConfig("anthropic-2024-04", m=64, steps=50, batch_size=256, lr=1e25, seed=5)
    alone = train(good, small_store)
    together = train_pack([good, bad], small_store)
    assert together[1].status == "diverged" and together[1].diverged_step is not None
    assert "non-finite" in together[1].error and math.isnan(together[1].metrics["loss"])
    assert together[0].status == "ok"
    assert together[0].metrics["loss"] == pytest.approx(alone.metrics["loss"], rel=1e-4)


@pytest.mark.parametrize("recipe", ["anthropic-2024-04", "anthropic-2025-02"])
def test_stacked_pack_equals_separate_runs(small_store, recipe):
    runs = [RunConfig(recipe, m=96, steps=120, batch_size=256, lr=lr, lam=lam, seed=seed)
            for lr, lam, seed in [(1e-3, 1.0, 0), (3e-3, 2.0, 1), (2e-3, 0.5, 2), (5e-4, 1.5, 3)]]
    packed = train_pack(runs, small_store)
    for cfg, res in zip(runs, packed):
        alone = train(cfg, small_store)
        assert res.info["pack_size"] == 4 and alone.info["pack_size"] == 1
        for key in ("loss", "mse", "nmse", "fvu", "l0", "l1", "shrinkage", "mmcs", "dead_frac", "dense_frac"):
            assert res.metrics[key] == pytest.approx(alone.metrics[key], rel=2e-3, abs=1e-6), key


def test_pack_rejects_runs_of_different_shape(small_store):
    with pytest.raises(UserError, match="pack"):
        train_pack([RunConfig("anthropic-2024-04", m=64, steps=10), RunConfig("anthropic-2024-04", m=32, steps=10)],
                   small_store)


def _normalised_prediction(recipe_arch, state, hp, x_norm):
    K1 = ARCHS[recipe_arch](1, state["W_e"].shape[0], state["W_d"].shape[1], state["W_d"].shape[0], hp)
    K1.params = {k: v.unsqueeze(1 if k == "W_e" else 0).clone() for k, v in state.items()}
    with torch.no_grad():
        return K1.decode(K1.activate(K1.pre_acts(x_norm)))[0]


@pytest.mark.parametrize("recipe,transcoder", [("anthropic-2024-04", False), ("anthropic-2025-02", False),
                                               ("anthropic-2025-02", True)])
def test_export_folds_norms_without_changing_predictions(tmp_path, recipe, transcoder):
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(6000, 12)) * 3 + 1).astype(np.float32)
    y = (x @ rng.normal(size=(12, 20)) * 0.5).astype(np.float32) if transcoder else None
    store = write_store(tmp_path / "s", x, y, eval_rows=1000)
    res = train(RunConfig(recipe, m=40, steps=80, batch_size=250, lr=3e-3, lam=0.5), store,
                TrainOptions(keep_weights=True))
    out = export_sae(res.weights, res.run, store, tmp_path / "export")
    sae = load_sae(out)
    assert torch.allclose(sae.weights["W_dec"].norm(dim=1), torch.ones(40), atol=1e-5)
    xt = torch.from_numpy(x[:500])
    raw_pred = sae(xt)
    expected = _normalised_prediction(res.run.recipe.arch, res.weights, dict(res.run.hp), xt * store.meta.norm_scale)
    expected = expected / store.meta.target_norm_scale
    assert torch.allclose(raw_pred, expected, rtol=1e-4, atol=1e-4 * expected.abs().max())
    assert sae.config["d_in"] == 12 and sae.config["d_sae"] == 40 and sae.config["d_out"] == (20 if transcoder else 12)


def test_fold_weights_unit_decoder_and_scaled_threshold():
    state = {"W_e": torch.randn(4, 3), "b_e": torch.randn(3), "W_d": torch.randn(3, 4) * torch.tensor([[2.0], [0.5], [1.0]]),
             "b_d": torch.randn(4), "log_threshold": torch.zeros(3)}
    folded = fold_weights(state, 2.0, 2.0, "jumprelu", {})
    s = (state["W_d"] / 2.0).norm(dim=1)
    assert torch.allclose(folded["W_dec"].norm(dim=1), torch.ones(3), atol=1e-6)
    assert torch.allclose(folded["threshold"], s, atol=1e-6)


def test_relu_recipe_refuses_transcoder_store(tmp_path):
    x = np.ones((3000, 4), np.float32)
    store = write_store(tmp_path / "s", x, np.ones((3000, 6), np.float32), eval_rows=500)
    with pytest.raises(UserError, match="transcoder"):
        train(RunConfig("anthropic-2024-04", m=8, steps=2, batch_size=100), store)
