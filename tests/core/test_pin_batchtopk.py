"""Pins of the batchtopk-2024 recipe (Bussmann et al. 2024): batch-level selection in training,
the inference threshold (its estimate, its use at eval and in the export), AuxK, one training
step against a hand-written recipe, defaults, and quality.

Expected values are written out by hand or recomputed here from the papers' formulas.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_core.arch import ARCHS
from sae_core.config import RunConfig
from sae_core.errors import UserError
from sae_core.export import export_sae, load_sae
from sae_core.recipes import get_recipe
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.train import TrainOptions, train

from .helpers import write_store

RECIPE = "batchtopk-2024"


def _sae(K=1, n=3, m=4, overrides=None, run_hps=None):
    hp = get_recipe(RECIPE).resolve({"k": 2, **(overrides or {})})
    return ARCHS["batchtopk"](K, n, n, m, hp, "cpu", run_hps=run_hps)


def test_defaults() -> None:
    r = get_recipe(RECIPE)
    assert r.arch == "batchtopk" and "Bussmann" in r.source and "section 3" in r.source
    d = r.defaults
    assert d["k"] == 32 and d["k_aux"] == 512 and d["auxk_coef"] == 0.03125
    assert d["dead_window_tokens"] == 10_000_000
    assert d["threshold_ema_rate"] == 0.01
    assert d["lr"] == 3e-4 and d["batch_size"] == 4096
    assert d["adam_eps"] == 1e-8 and d["adam_beta1"] == 0.9 and d["adam_beta2"] == 0.999
    assert d["lambda"] == 0.0 and d["lambda_warmup_frac"] == 0.0
    assert d["grad_clip"] == 0.0 and d["lr_decay_frac"] == 0.0
    assert d["b_pre_init_rows"] == 32768 and d["normalize"] is True
    with pytest.raises(UserError, match="threshold_ema_rate"):
        RunConfig(RECIPE, m=8, steps=1, hparams={"k": 2, "threshold_ema_rate": 0}).resolve()
    with pytest.raises(UserError, match="lambda must be 0"):
        RunConfig(RECIPE, m=8, steps=1, lam=0.5, hparams={"k": 2}).resolve()


def test_training_keeps_the_k_times_B_largest_of_the_batch_per_run() -> None:
    h = torch.tensor([[[3.0, -1.0, 2.0, 5.0], [0.5, 4.0, 1.0, 2.0]],
                      [[1.0, 0.2, 0.3, 4.0], [-2.0, -1.0, 6.0, 0.1]]])          # [B=2, K=2, m=4]
    hp = get_recipe(RECIPE).resolve
    sae = _sae(K=2, run_hps=[hp({"k": 1}), hp({"k": 2})])
    sae.training = True
    f = sae.select(h)
    # run 0, k*B = 2 of {3,-1,2,5,1,.2,.3,4}: 5 and 4 (row 0 keeps one, row 1 keeps one)
    # run 1, k*B = 4 of {.5,4,1,2,-2,-1,6,.1}: 6, 4, 2, 1 (row 0 keeps three, row 1 keeps one)
    expected = torch.tensor([[[0, 0, 0, 5.0], [0, 4.0, 1.0, 2.0]],
                             [[0, 0, 0, 4.0], [0, 0, 6.0, 0]]])
    assert torch.equal(f, expected)
    big = torch.rand(32, 2, 50) + 0.01
    assert (sae.select(big) > 0).sum(dim=(0, 2)).tolist() == [32 * 1, 32 * 2]
    neg = -torch.rand(4, 2, 5)
    neg[2, :, 3] = 0.5                     # one positive entry per run; the other kept ones are ReLU'd to 0
    assert (sae.select(neg) != 0).sum(dim=(0, 2)).tolist() == [1, 1]


def test_inference_uses_the_threshold_not_the_batch() -> None:
    sae = _sae(K=2)
    sae.buffers["threshold"].copy_(torch.tensor([1.5, 0.25]))
    h = torch.tensor([[[3.0, 1.0, 1.5, 2.0], [0.5, 0.2, -1.0, 0.3]]])
    assert torch.equal(sae.select(h), torch.tensor([[[3.0, 0, 0, 2.0], [0.5, 0, 0, 0.3]]]))


def test_threshold_estimate_first_batch_then_ema() -> None:
    sae = _sae(K=2)
    f1 = torch.tensor([[[0.0, 2.0], [0.0, 0.0]], [[0.5, 3.0], [0.0, 0.0]]])   # [B, K, m]; run 1 never fires
    sae.update_threshold(f1)
    assert sae.buffers["threshold"].tolist() == [0.5, 0.0]
    f2 = torch.tensor([[[1.5, 0.0], [0.0, 0.8]]])
    sae.update_threshold(f2)
    # theta + 0.01 (min - theta) = 0.5 + 0.01 * 1.0 for run 0; first value 0.8 for run 1
    assert sae.buffers["threshold"].tolist() == pytest.approx([0.51, 0.8])


def test_threshold_is_per_run_state_reset_and_restored() -> None:
    sae = _sae(K=2)
    sae.init_params([0, 1], False, None)
    sae.buffers["threshold"].copy_(torch.tensor([0.7, 0.9]))
    state = sae.run_state(1)
    assert float(state["threshold"]) == pytest.approx(0.9)
    sae.reset_run(1)
    assert sae.buffers["threshold"].tolist() == pytest.approx([0.7, 0.0])
    sae.load_run(1, state)
    assert sae.buffers["threshold"].tolist() == pytest.approx([0.7, 0.9])


def test_auxk_with_batch_selection() -> None:
    sae = _sae(overrides={"k": 1, "k_aux": 2})
    for name, value in {"W_e": torch.eye(3, 4).view(3, 1, 4), "b_e": torch.zeros(1, 4),
                        "W_d": torch.tensor([[[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]]]),
                        "b_d": torch.zeros(1, 3)}.items():
        sae.params[name] = value.clone().requires_grad_(True)
    sae.before_step(torch.tensor([[0, 10_000_000, 0, 10_000_000]]))
    x = torch.tensor([[3.0, 2.0, 1.0]])
    t = sae.train_terms(x, x)
    # k*B = 1 keeps h_0 = 3: e = [0, 2, 1]; dead {1, 3} -> e_hat = 2 [0, 1, 0]; L_aux = 1, times 1/32
    assert t.mse.item() == pytest.approx(5.0)
    assert t.aux.item() == pytest.approx(1 / 32)


def _hand_step(x, seed, k, lr, m=6, eps=1e-8):
    """One step written from the papers: batch top-(k B), plain MSE, projected decoder gradient,
    Adam's first step g / (|g| + eps), renormalised rows; theta = smallest kept activation."""
    B, n = x.shape
    raw = torch.randn(m, n, generator=torch.Generator().manual_seed(seed)).double()
    W_d = (raw / raw.norm(dim=-1, keepdim=True)).requires_grad_(True)
    W_e = W_d.detach().T.clone().requires_grad_(True)
    b_e = torch.zeros(m, dtype=torch.float64, requires_grad=True)
    b_d = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    xd = x.double()
    h = torch.relu((xd - b_d) @ W_e + b_e)
    top = h.flatten().topk(k * B)
    f = torch.zeros(B * m, dtype=torch.float64).scatter(0, top.indices, top.values).view(B, m)
    loss = ((f @ W_d + b_d - xd) ** 2).sum(-1).mean()
    loss.backward()
    d = W_d.detach()
    g = W_d.grad - (W_d.grad * d).sum(-1, keepdim=True) * d
    new = {}
    for name, p, grad in (("W_d", W_d, g), ("W_e", W_e, W_e.grad), ("b_e", b_e, b_e.grad), ("b_d", b_d, b_d.grad)):
        new[name] = p.detach() - lr * grad / (grad.abs() + eps)
    new["W_d"] = new["W_d"] / new["W_d"].norm(dim=-1, keepdim=True)
    new["threshold"] = top.values[top.values > 0].min().detach()
    return new, loss.item()


def test_one_training_step_matches_the_hand_written_recipe(tmp_path) -> None:
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    store = write_store(tmp_path / "s", x, eval_rows=32)
    lr = 1e-2
    r = train(RunConfig(RECIPE, m=6, steps=1, batch_size=32, lr=lr, seed=3,
                        hparams={"k": 2, "normalize": False, "b_pre_init_rows": 0}), store,
              TrainOptions(keep_weights=True))
    expected, loss = _hand_step(torch.from_numpy(x[:32]), 3, 2, lr)
    assert r.metrics["train_loss_final"] == pytest.approx(loss, rel=1e-5)
    w = r.weights
    for name in ("W_d", "W_e", "b_e", "b_d"):
        assert torch.allclose(w[name].double(), expected[name], atol=1e-5), name
    assert float(w["threshold"]) == pytest.approx(float(expected["threshold"]), rel=1e-5)


def test_export_is_saelens_jumprelu_with_the_threshold(tmp_path) -> None:
    x = (np.random.default_rng(2).normal(size=(512, 8)) * 3 + 1).astype(np.float32)
    store = write_store(tmp_path / "s", x, eval_rows=128)
    r = train(RunConfig(RECIPE, m=16, steps=20, batch_size=64, lr=1e-2, hparams={"k": 3}), store,
              TrainOptions(keep_weights=True))
    theta = float(r.weights["threshold"])
    assert theta > 0
    sae = load_sae(export_sae(r.weights, r.run, store, tmp_path / "e"))
    assert sae.config["architecture"] == "jumprelu"
    c = store.meta.norm_scale
    # unit-norm decoder rows: the folded scale is 1/c for every latent
    assert torch.allclose(sae.weights["threshold"], torch.full((16,), theta / c), rtol=1e-5)
    model = ARCHS["batchtopk"](1, 8, 8, 16, dict(r.run.hp))
    model.params = {k: v.unsqueeze(1 if k == "W_e" else 0) for k, v in r.weights.items() if k != "threshold"}
    model.buffers["threshold"].fill_(theta)
    xs = torch.from_numpy(x[:50])
    ours = model.terms(xs * c, xs * c)
    assert torch.allclose(sae(xs), ours.y_hat[0] / c, atol=1e-4)
    assert torch.equal(sae.encode(xs) > 0, ours.f[:, 0] > 0)


@pytest.fixture(scope="module")
def default_store(cache_dir):
    return synthetic_store(SyntheticConfig(), cache_dir)


@pytest.mark.slow   # ~15 s of CPU (several minutes on the shared 2 cores)
def test_quality_on_the_default_synthetic_problem(default_store) -> None:
    """m=1024, k=5, batch 1024, lr 3e-3, 1000 steps: MMCS 0.629 measured, BELOW the 0.85 target.

    BatchTopK leaves most latents unselected on this Zipf problem (eval_dead_frac 0.5-0.8 in
    every 1M-token setting tried); see docs/recipes_topk.md. It reaches 0.897 only with 10000
    steps and dead_window_tokens=1M (AuxK active), about 4 CPU-minutes. This pins the fast setting.
    """
    r = train(RunConfig(RECIPE, m=1024, steps=1000, batch_size=1024, lr=3e-3, hparams={"k": 5}), default_store)
    assert r.status == "ok"
    assert r.metrics["mmcs"] >= 0.6, r.metrics
    assert r.metrics["l0"] == pytest.approx(5.0, rel=0.05)
