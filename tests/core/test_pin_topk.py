"""Pins of the openai-2024-topk recipe (Gao et al. 2024): selection, AuxK, dead latents, init,
decoder projection/renormalisation inside the training loop, export, defaults, and quality.

Expected values are written out by hand or recomputed here from the paper's formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sae_core.arch import ARCHS
from sae_core.config import RunConfig
from sae_core.errors import UserError
from sae_core.export import export_sae, load_sae
from sae_core.recipes import get_recipe
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.train import TrainOptions, train, train_pack

from .helpers import write_store

RECIPE = "openai-2024-topk"


def _sae(K=1, n=3, m=4, overrides=None, run_hps=None):
    hp = get_recipe(RECIPE).resolve({"k": 2, **(overrides or {})})
    return ARCHS["topk"](K, n, n, m, hp, "cpu", run_hps=run_hps)


def _set(sae, **tensors):
    for name, value in tensors.items():
        sae.params[name] = torch.as_tensor(value, dtype=torch.float32).clone().requires_grad_(True)


def test_defaults_are_the_papers() -> None:
    r = get_recipe(RECIPE)
    assert r.arch == "topk" and "Gao" in r.source and "A.2" in r.source
    d = r.defaults
    assert d["k"] == 32
    assert d["k_aux"] == 512
    assert d["auxk_coef"] == 1 / 32 == 0.03125
    assert d["dead_window_tokens"] == 10_000_000
    assert d["lambda"] == 0.0 and d["lambda_warmup_frac"] == 0.0
    assert d["lr"] == 2e-4 and d["batch_size"] == 131072
    assert d["adam_eps"] == 6.25e-10 and d["adam_beta1"] == 0.9 and d["adam_beta2"] == 0.999
    assert d["grad_clip"] == 0.0 and d["lr_decay_frac"] == 0.0
    assert d["b_pre_init_rows"] == 32768
    assert d["normalize"] is True and d["precision"] == "fp32"
    assert get_recipe(RECIPE).supports_transcoder is False


def test_bad_hyperparameters_are_one_line_errors() -> None:
    with pytest.raises(UserError, match="lambda must be 0"):
        RunConfig(RECIPE, m=8, steps=1, lam=1.0).resolve()
    with pytest.raises(UserError, match="k must be <= m"):
        RunConfig(RECIPE, m=8, steps=1, hparams={"k": 9}).resolve()
    with pytest.raises(UserError, match="k must be a positive integer"):
        RunConfig(RECIPE, m=8, steps=1, hparams={"k": 0}).resolve()
    with pytest.raises(UserError, match="k_aux must be a positive integer"):
        RunConfig(RECIPE, m=8, steps=1, hparams={"k": 2, "k_aux": 0}).resolve()
    with pytest.raises(UserError, match="auxk_coef"):
        RunConfig(RECIPE, m=8, steps=1, hparams={"k": 2, "auxk_coef": -1}).resolve()
    assert RunConfig(RECIPE, m=8, steps=1, hparams={"k": 8}).resolve().hp["k"] == 8


def test_topk_keeps_exactly_k_per_row_with_per_run_k() -> None:
    h = torch.tensor([[[3.0, -1.0, 2.0, 5.0], [0.5, 4.0, 1.0, 2.0]],
                      [[1.0, 2.0, 3.0, 4.0], [-2.0, -1.0, 6.0, 0.1]]])          # [B=2, K=2, m=4]
    sae = _sae(K=2, m=4, run_hps=[{**get_recipe(RECIPE).resolve({"k": 2})}, {**get_recipe(RECIPE).resolve({"k": 3})}])
    f = sae.select(h)
    expected = torch.tensor([[[3.0, 0, 0, 5.0], [0, 4.0, 1.0, 2.0]],
                             [[0, 0, 3.0, 4.0], [0, -0.0, 6.0, 0.1]]])
    # row 1 of run 1: -1 is among the top 3 of [-2, -1, 6, 0.1], but the ReLU zeroes it
    assert torch.equal(f, expected)
    big = torch.randn(64, 2, 50).abs() + 0.01                   # all positive: exactly k survive
    counts = (sae.select(big) > 0).sum(-1)
    assert torch.equal(counts, torch.tensor([2, 3]).expand(64, 2))


def test_pre_acts_centre_the_input_by_b_pre() -> None:
    sae = _sae()
    W_e = torch.tensor([[1.0, 0, 2, 0], [0, 1, 0, -1], [1, 1, 1, 1]]).view(3, 1, 4)
    _set(sae, W_e=W_e, b_e=[[0.5, 0, 0, -0.5]], b_d=[[1.0, 2.0, 3.0]])
    x = torch.tensor([[2.0, 2.0, 4.0]])
    # (x - b_pre) = [1, 0, 1];  [1, 0, 1] @ W_e = [2, 1, 3, 1];  + b_e
    assert torch.allclose(sae.pre_acts(x), torch.tensor([[[2.5, 1.0, 3.0, 0.5]]]))


def _toy(dead):
    sae = _sae(overrides={"k": 1, "k_aux": 2})
    _set(sae, W_e=torch.eye(3, 4).view(3, 1, 4), b_e=torch.zeros(1, 4),
         W_d=[[[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]]], b_d=torch.zeros(1, 3))
    sae.before_step(torch.tensor([[0, 0, 0, 0]]) + torch.tensor(dead) * 10_000_000)
    return sae


def test_auxk_loss_value_and_coefficient() -> None:
    # x = [3, 2, 1]: h = [3, 2, 1, 0]; k = 1 keeps latent 0: x_hat = [3, 0, 0], e = [0, 2, 1].
    # Dead latents {1, 3}: k_aux = 2 takes both: ReLU(h) = [2, 0] -> e_hat = 2 * [0, 1, 0] = [0, 2, 0].
    # L_aux = ||e - e_hat||^2 = 1; loss adds 1/32 * 1.
    sae = _toy([[0, 1, 0, 1]])
    t = sae.train_terms(torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([[3.0, 2.0, 1.0]]))
    assert t.mse.item() == pytest.approx(5.0)
    assert t.sparsity.item() == 0.0
    assert t.aux.item() == pytest.approx(1 / 32)
    # Dead {2}: z_aux = ReLU(1) on latent 2 -> e_hat = [0, 0, 1], L_aux = 4.
    assert _toy([[0, 0, 1, 0]]).train_terms(torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([[3.0, 2.0, 1.0]])).aux.item() \
        == pytest.approx(4 / 32)
    # No dead latent: no auxiliary loss.
    assert _toy([[0, 0, 0, 0]]).train_terms(torch.tensor([[3.0, 2.0, 1.0]]), torch.tensor([[3.0, 2.0, 1.0]])).aux.item() == 0.0


def test_auxk_is_per_run_in_a_pack() -> None:
    sae = _sae(K=2, overrides={"k": 1, "k_aux": 2})
    W_d = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]])
    _set(sae, W_e=torch.eye(3, 4).unsqueeze(1).expand(3, 2, 4), b_e=torch.zeros(2, 4),
         W_d=torch.stack([W_d, W_d]), b_d=torch.zeros(2, 3))
    sae.before_step(torch.tensor([[0, 10_000_000, 0, 10_000_000], [0, 0, 0, 0]]))
    x = torch.tensor([[3.0, 2.0, 1.0]])
    # run 0 as in the single-run case (L_aux = 1); run 1 has no dead latent: no auxiliary loss
    assert sae.train_terms(x, x).aux.tolist() == pytest.approx([1 / 32, 0.0])


def test_training_loop_feeds_dead_latents_to_auxk(tmp_path) -> None:
    x = np.random.default_rng(4).normal(size=(512, 8)).astype(np.float32)
    store = write_store(tmp_path / "s", x, eval_rows=128)
    short, default = (train(RunConfig(RECIPE, m=32, steps=4, batch_size=32, hparams={"k": 1, **extra}), store)
                      for extra in ({"dead_window_tokens": 64}, {}))
    assert short.metrics["aux_term"] > 0      # 32 latents, 1 per token: some never fire in 64 tokens
    assert default.metrics["aux_term"] == 0.0


def test_auxk_uses_top_k_aux_dead_latents_and_detached_error() -> None:
    sae = _toy([[0, 1, 1, 1]])
    sae.hp = {**sae.hp, "k_aux": 1}
    x = torch.tensor([[3.0, 2.0, 1.0]])
    t = sae.train_terms(x, x)
    # only the largest dead latent (1, h=2): e_hat = [0, 2, 0], e = [0, 2, 1] -> L_aux = 1
    assert t.aux.item() == pytest.approx(1 / 32)
    t.aux.sum().backward()
    # e is detached: the aux gradient reaches W_d only through e_hat (row 1), never the live row 0
    assert torch.equal(sae.params["W_d"].grad[0, 0], torch.zeros(3))
    assert sae.params["W_d"].grad[0, 1].abs().sum() > 0


def test_dead_means_not_fired_in_ten_million_tokens() -> None:
    sae = _sae()
    sae.before_step(torch.tensor([[0, 9_999_999, 10_000_000, 20_000_000]]))
    assert sae.dead.tolist() == [[False, False, True, True]]


def test_init_unit_decoder_rows_encoder_is_transpose_and_b_pre_is_the_sample_mean() -> None:
    n, m = 5, 7
    sae = _sae(K=2, n=n, m=m)
    sample = torch.tensor([[1.0, 2, 3, 4, 5], [3.0, 0, 1, 0, -1]])
    sae.init_params([11, 12], False, sample)
    for k, seed in enumerate([11, 12]):
        raw = torch.randn(m, n, generator=torch.Generator().manual_seed(seed))
        expected = raw / raw.norm(dim=-1, keepdim=True)
        assert torch.allclose(sae.params["W_d"][k], expected)
        assert torch.equal(sae.params["W_e"][:, k, :], sae.params["W_d"][k].T)
    assert torch.allclose(sae.params["W_d"].norm(dim=-1), torch.ones(2, m))
    assert torch.equal(sae.params["b_e"], torch.zeros(2, m))
    assert torch.allclose(sae.params["b_d"], torch.tensor([[2.0, 1, 2, 2, 2]] * 2))


def test_projection_and_renormalisation_hooks() -> None:
    sae = _sae()
    W = torch.tensor([[[3.0, 4, 0], [0, 0, 2], [1, 0, 0], [0, 1, 0]]])
    _set(sae, W_d=W)
    sae.params["W_d"].grad = torch.tensor([[[1.0, 1, 1], [1, 2, 3], [0, 5, 0], [2, 2, 2]]])
    sae.adjust_grads()
    # g - <g, d> d with d = W / |W|: row 0 d = [.6, .8, 0], <g,d> = 1.4 -> [1 - .84, 1 - 1.12, 1]
    expected = torch.tensor([[[0.16, -0.12, 1.0], [1, 2, 0], [0, 5, 0], [2, 0, 2]]])
    assert torch.allclose(sae.params["W_d"].grad, expected, atol=1e-6)
    sae.after_step()
    assert torch.allclose(sae.params["W_d"], torch.tensor([[[0.6, 0.8, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]]]))


def _hand_step(x, seed, k, lr, eps=6.25e-10):
    """One training step written from the paper: TopK forward, plain MSE, projected gradient,
    Adam's first step g / (|g| + eps), renormalised decoder rows."""
    n, m = x.shape[1], 6
    raw = torch.randn(m, n, generator=torch.Generator().manual_seed(seed)).double()
    W_d = (raw / raw.norm(dim=-1, keepdim=True)).requires_grad_(True)
    W_e = W_d.detach().T.clone().requires_grad_(True)
    b_e = torch.zeros(m, dtype=torch.float64, requires_grad=True)
    b_d = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    xd = x.double()
    h = (xd - b_d) @ W_e + b_e
    top = h.topk(k, dim=-1)
    f = torch.zeros_like(h).scatter(-1, top.indices, torch.relu(top.values))
    loss = ((f @ W_d + b_d - xd) ** 2).sum(-1).mean()
    loss.backward()
    d = W_d.detach()
    g = W_d.grad - (W_d.grad * d).sum(-1, keepdim=True) * d
    new = {}
    for name, p, grad in (("W_d", W_d, g), ("W_e", W_e, W_e.grad), ("b_e", b_e, b_e.grad), ("b_d", b_d, b_d.grad)):
        new[name] = p.detach() - lr * grad / (grad.abs() + eps)
    new["W_d"] = new["W_d"] / new["W_d"].norm(dim=-1, keepdim=True)
    return new, loss.item()


def test_one_training_step_matches_the_hand_written_recipe(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    store = write_store(tmp_path / "s", x, eval_rows=32)
    lr = 1e-2
    r = train(RunConfig(RECIPE, m=6, steps=1, batch_size=32, lr=lr, seed=3,
                        hparams={"k": 2, "normalize": False, "b_pre_init_rows": 0}), store,
              TrainOptions(keep_weights=True))
    expected, loss = _hand_step(torch.from_numpy(x[:32]), 3, 2, lr)
    assert r.metrics["train_loss_final"] == pytest.approx(loss, rel=1e-5)
    w = r.weights
    assert torch.allclose(w["W_d"].double(), expected["W_d"], atol=1e-5)
    assert torch.allclose(w["W_e"][:, 0, :].double() if w["W_e"].dim() == 3 else w["W_e"].double(), expected["W_e"], atol=1e-5)
    assert torch.allclose(w["b_e"].double(), expected["b_e"], atol=1e-5)
    assert torch.allclose(w["b_d"].double(), expected["b_d"], atol=1e-5)


def test_per_run_k_in_one_pack_and_the_k_column(tmp_path) -> None:
    x = np.random.default_rng(1).normal(size=(512, 8)).astype(np.float32)
    store = write_store(tmp_path / "s", x, eval_rows=128)
    runs = [RunConfig(RECIPE, m=16, steps=3, batch_size=64, hparams={"k": k}) for k in (2, 5)]
    res = train_pack(runs, store)
    assert [r.row()["k"] for r in res] == [2, 5]
    assert "hp_k" not in res[0].row()
    assert [r.metrics["l0"] for r in res] == pytest.approx([2.0, 5.0], abs=0.05)


def test_export_round_trip_matches_the_model(tmp_path) -> None:
    x = (np.random.default_rng(2).normal(size=(512, 8)) * 3 + 1).astype(np.float32)
    store = write_store(tmp_path / "s", x, eval_rows=128)
    r = train(RunConfig(RECIPE, m=16, steps=5, batch_size=64, lr=1e-2, hparams={"k": 3}), store,
              TrainOptions(keep_weights=True))
    sae = load_sae(export_sae(r.weights, r.run, store, tmp_path / "e"))
    assert sae.config["architecture"] == "topk" and sae.config["k"] == 3
    model = ARCHS["topk"](1, 8, 8, 16, dict(r.run.hp))
    model.params = {k: v.unsqueeze(1 if k == "W_e" else 0) for k, v in r.weights.items()}
    xs = torch.from_numpy(x[:50])
    c = store.meta.norm_scale
    ours = model.terms(xs * c, xs * c)
    assert torch.allclose(sae(xs), ours.y_hat[0] / c, atol=1e-4)
    assert ((sae.encode(xs) > 0).sum(-1) == (ours.f[:, 0] > 0).sum(-1)).all()


@pytest.fixture(scope="module")
def default_store(cache_dir):
    return synthetic_store(SyntheticConfig(), cache_dir)


@pytest.mark.slow   # ~15 s of CPU (about a minute on the shared 2 cores)
def test_quality_on_the_default_synthetic_problem(default_store) -> None:
    """README setting: m=1024, k=3, batch 1024, lr 3e-3, 1000 steps -> MMCS >= 0.85 (0.907 measured), L0 = k."""
    r = train(RunConfig(RECIPE, m=1024, steps=1000, batch_size=1024, lr=3e-3, hparams={"k": 3}), default_store)
    assert r.status == "ok"
    assert r.metrics["mmcs"] >= 0.85, r.metrics
    assert r.metrics["l0"] == 3.0
    assert not math.isnan(r.metrics["nmse"])
