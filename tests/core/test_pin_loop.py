"""Pins what the training loop applies, by instrumenting a tiny real run of each recipe.

A two-run pack trains on a small store while the optimiser's step is wrapped to record, per
step, the parameters, the gradients it receives and the per-run LRs, and the batch stream is
wrapped to record each batch. Each step is then replayed with pin_reference: the recorded
gradient must equal the hand-written gradient at lambda x warm-up factor, clipped to norm 1;
the LR must be lr x decay factor; the next parameters must be one textbook Adam step; batches
must be training rows scaled by c with E||c x|| = sqrt(n); the data-sample b_e init must use
normalised rows; the eval metrics and dead fraction must match the reference on the result.
"""

import math

import numpy as np
import pytest
import torch

from sae_core.config import RunConfig
from sae_core.loader import BatchStream
from sae_core.optim import StackedAdam
from sae_core.train import TrainOptions, train_pack

from . import pin_reference as ref
from .helpers import write_store

N, M, B, S = 6, 8, 50, 60
TRAIN, EVAL = 2000, 400
RUNS = [dict(lr=3e-2, lam=0.8, seed=3), dict(lr=1e-2, lam=2.0, seed=4)]
WINDOW = 6 * B   # dead_window_tokens for the dead-fraction check


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(11)
    dirs = rng.normal(size=(12, N))
    codes = rng.exponential(size=(TRAIN + EVAL, 12)) * (rng.random((TRAIN + EVAL, 12)) < 0.25)
    x = (codes @ dirs * 4.0 + 1.5).astype(np.float32)   # raw scale far from sqrt(n), non-zero mean
    store = write_store(tmp_path_factory.mktemp("pinloop") / "s", x, eval_rows=EVAL)
    return store, x


def _record(monkeypatch):
    log = {"steps": [], "batches": []}
    step, batch = StackedAdam.step, BatchStream.batch

    def recording_step(self, lrs):
        log["steps"].append({
            "lrs": lrs.detach().double().clone(),
            "params": {k: p.detach().double().clone() for k, p in self.params.items()},
            "grads": {k: p.grad.detach().double().clone() for k, p in self.params.items()},
        })
        return step(self, lrs)

    def recording_batch(self, i):
        x, y = batch(self, i)
        log["batches"].append(x.detach().double().clone())
        return x, y

    monkeypatch.setattr(StackedAdam, "step", recording_step)
    monkeypatch.setattr(BatchStream, "batch", recording_batch)
    return log


def _run(k, params):
    out = {"W_e": params["W_e"][:, k, :], "b_e": params["b_e"][k], "W_d": params["W_d"][k], "b_d": params["b_d"][k]}
    if "log_threshold" in params:
        out["log_threshold"] = params["log_threshold"][k]
    return out


def _ref_grads(recipe, p, x, lam):
    if recipe == "anthropic-2024-04":
        return ref.relu_loss_and_grads(x, x, p["W_e"], p["b_e"], p["W_d"], p["b_d"], lam)[1]
    return ref.jumprelu_loss_and_grads(x, x, p["W_e"], p["b_e"], p["W_d"], p["b_d"], p["log_threshold"], lam)[1]


def _fired(recipe, p, x):
    h = x @ p["W_e"] + p["b_e"]
    thr = p["log_threshold"].exp() if recipe == "anthropic-2025-02" else 0.0
    return (h > thr).any(0)


def _close(a, b, what):
    scale = float(b.abs().max()) + 1e-12
    assert torch.allclose(a, b, rtol=1e-4, atol=2e-5 * scale), (what, float((a - b).abs().max()), scale)


@pytest.fixture(scope="module", params=["anthropic-2024-04", "anthropic-2025-02"])
def trained(request, data):
    store, x = data
    recipe = request.param
    hp = {"dead_window_tokens": WINDOW}
    if recipe == "anthropic-2025-02":
        hp["b_e_target_fires"] = 2.0     # fire 2/8 of the sample at init (the 10000 default is pinned elsewhere)
    runs = [RunConfig(recipe, m=M, steps=S, batch_size=B, hparams={**hp, "lr": r["lr"], "lambda": r["lam"]},
                      seed=r["seed"]) for r in RUNS]
    with pytest.MonkeyPatch.context() as mp:
        log = _record(mp)
        results = train_pack(runs, store, TrainOptions(keep_weights=True))
    return recipe, results, log, x


def test_batches_are_training_rows_scaled_to_mean_norm_sqrt_n(trained):
    recipe, results, log, x = trained
    c = ref.norm_scale(x[:TRAIN])
    assert c == pytest.approx(math.sqrt(N) / np.linalg.norm(x[:TRAIN].astype(np.float64), axis=1).mean())
    assert len(log["batches"]) == S
    train_rows = torch.from_numpy(x[:TRAIN]).double() * c
    for xb in log["batches"][:5] + log["batches"][-2:]:
        assert xb.shape == (B, N)
        d = torch.cdist(xb, train_rows).min(dim=1).values
        assert float(d.max()) < 1e-4 * math.sqrt(N), float(d.max())


def test_each_step_gradient_is_the_warmed_up_loss_gradient_clipped_to_one(trained):
    recipe, results, log, _ = trained
    hp = results[0].run.hp
    assert len(log["steps"]) == S
    clipped = unclipped = 0
    for t, (rec, xb) in enumerate(zip(log["steps"], log["batches"])):
        for k, r in enumerate(RUNS):
            lam = r["lam"] * ref.lambda_factor(t, S, 0.05 if recipe == "anthropic-2024-04" else 1.0)
            raw = _ref_grads(recipe, _run(k, rec["params"]), xb, lam)
            expected, norm = ref.clip(raw, 1.0)
            clipped += norm > 1.0
            unclipped += norm < 1.0
            for name, g in expected.items():
                _close(_run(k, rec["grads"])[name], g, (t, k, name))
    assert hp["lambda_warmup_frac"] in (0.05, 1.0)
    assert clipped > 5 and unclipped >= 2, (clipped, unclipped)   # the fixture exercises both sides of the clip


def test_each_step_lr_is_the_decayed_lr(trained):
    _, _, log, _ = trained
    for t, rec in enumerate(log["steps"]):
        expected = torch.tensor([r["lr"] * ref.lr_factor(t, S, 0.2) for r in RUNS], dtype=torch.float64)
        assert torch.allclose(rec["lrs"], expected, rtol=1e-6, atol=0), (t, rec["lrs"], expected)
    assert float(log["steps"][-1]["lrs"][0]) == pytest.approx(RUNS[0]["lr"] / 12)   # D = 20% of 60 steps


def test_each_update_is_one_adam_step(trained):
    _, results, log, _ = trained
    for k in range(len(RUNS)):
        steps = [_run(k, rec["params"]) for rec in log["steps"]] + [results[k].weights]
        adam = ref.Adam(steps[0], 0.9, 0.999, 1e-8)
        for t, rec in enumerate(log["steps"]):
            lr = float(rec["lrs"][k])
            predicted = adam.step(steps[t], _run(k, rec["grads"]), lr)
            for name, p in predicted.items():
                _close(steps[t + 1][name].double(), p, (t, k, name))


def test_jumprelu_b_e_init_uses_normalised_data_sample(trained):
    recipe, results, log, x = trained
    if recipe != "anthropic-2025-02":
        pytest.skip("b_e is zero for the ReLU recipe (pinned in test_pin_init)")
    c = ref.norm_scale(x[:TRAIN])
    xs = torch.from_numpy(x[:TRAIN]).double() * c
    for k in range(len(RUNS)):
        p = _run(k, log["steps"][0]["params"])
        frac = ((xs @ p["W_e"] + p["b_e"]) > p["log_threshold"].exp()).double().mean(0)
        assert torch.allclose(frac, torch.full((M,), 2.0 / M, dtype=torch.float64), atol=1.5 / TRAIN), frac
        assert torch.allclose(p["log_threshold"], torch.full((M,), 0.1, dtype=torch.float64))


def test_dead_fraction_uses_the_token_window(trained):
    recipe, results, log, _ = trained
    for k in range(len(RUNS)):
        last = torch.zeros(M, dtype=torch.float64)
        for t, (rec, xb) in enumerate(zip(log["steps"], log["batches"])):
            last[_fired(recipe, _run(k, rec["params"]), xb)] = (t + 1) * B
        seen = S * B
        expected = float(((seen - last) >= WINDOW).double().mean())
        assert results[k].metrics["dead_window_tokens"] == WINDOW
        assert results[k].metrics["dead_frac"] == pytest.approx(expected), (k, last)


def test_eval_metrics_match_reference_on_normalised_eval_split(trained):
    recipe, results, _, x = trained
    c = ref.norm_scale(x[:TRAIN])
    xe = torch.from_numpy(x[TRAIN:]).double() * c
    for k, r in enumerate(RUNS):
        w = {n: t.double() for n, t in results[k].weights.items()}
        if recipe == "anthropic-2024-04":
            rows = ref.relu_rows(xe, xe, w["W_e"], w["b_e"], w["W_d"], w["b_d"])
        else:
            rows = ref.jumprelu_rows(xe, xe, w["W_e"], w["b_e"], w["W_d"], w["b_d"], w["log_threshold"])
        expected = ref.eval_metrics(rows[0], rows[1], xe, w["W_d"].norm(dim=1), rows[2], rows[3], r["lam"])
        for key, value in expected.items():
            assert results[k].metrics[key] == pytest.approx(value, rel=2e-4, abs=1e-7), (key, k)
