"""Pins of `deepmind-2024-gated` (Rajamanoharan et al. 2024; seed 002): defaults, the three loss
terms and which of them reach the decoder, the decoder-norm variant and its two decoder
treatments, initialisation, the unit-norm steps in the loop, FLOPs and the export."""

import pytest
import torch

from sae_core.arch import ARCHS
from sae_core.config import RunConfig
from sae_core.errors import UserError
from sae_core.export import ENCODERS, fold_weights
from sae_core.flops import gated_flops_per_token
from sae_core.recipes import get_recipe
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.train import TrainOptions, train

RECIPE = "deepmind-2024-gated"
SMALL = SyntheticConfig(n=32, m_true=64, tokens=100_000, mean_active=3.0, zipf_exponent=0.5)

W_GATE = [[1.0, -0.5], [0.5, 2.0]]                  # [n=2, m=2]
PARAMS = dict(W_e=torch.tensor(W_GATE).view(2, 1, 2), b_e=[[0.1, -0.2]], r_mag=[[0.3, -0.4]],
              b_mag=[[-2.0, 0.2]], W_d=[[[0.6, 0.8], [2.0, -1.0]]], b_d=[[0.25, -0.25]])
X = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [2.0, -1.0]])   # row 3, feature 0: gate open, magnitude < 0


def _sae(K=1, n=2, m=2, **hp):
    sae = ARCHS["gated"](K, n, n, m, get_recipe(RECIPE).resolve(hp))
    sae.init_params(list(range(K)), False, None)
    return sae


def _set(sae, values):
    with torch.no_grad():
        for k, v in values.items():
            sae.params[k].copy_(torch.as_tensor(v, dtype=torch.float32))


def _hand_loss(p, x, lam, penalty, freeze):
    """The Gated loss written out; `freeze` = which decoder uses are frozen copies."""
    Wg, bg, r, bm = p["W_e"][:, 0, :], p["b_e"][0], p["r_mag"][0], p["b_mag"][0]
    Wd, bd = p["W_d"][0], p["b_d"][0]
    xc = x - bd
    gate = xc @ Wg + bg
    mag = xc @ (Wg * torch.exp(r)) + bm                 # W_mag = exp(r_mag) (.) W_gate
    f = (gate > 0).float() * torch.relu(mag)
    mse = ((x - (f @ Wd + bd)) ** 2).sum(1).mean()
    Wd_a, bd_a = (Wd.detach(), bd.detach()) if freeze in ("aux", "both") else (Wd, bd)
    aux = ((x - (torch.relu(gate) @ Wd_a + bd_a)) ** 2).sum(1).mean()
    if penalty == "l1":
        s = torch.relu(gate).sum(1).mean()
    else:
        norms = Wd.norm(dim=1)
        norms = norms.detach() if freeze == "both" else norms
        s = (torch.relu(gate) * norms).sum(1).mean()
    return mse, s, aux, mse + lam * s + aux


def test_defaults():
    r = get_recipe(RECIPE)
    assert r.arch == "gated" and not r.supports_transcoder and "seed 002" in r.source
    expected = {"lr": 3e-4, "lambda": 4.0, "batch_size": 4096, "lr_decay_frac": 0.0, "lambda_warmup_frac": 0.05,
                "grad_clip": 0.0, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_eps": 1e-8, "normalize": True,
                "sparsity_penalty": "l1", "decoder_freeze": "both"}
    assert {k: r.defaults[k] for k in expected} == expected
    assert ARCHS["gated"].saelens_architecture == "gated"
    for bad in ({"sparsity_penalty": "l2"}, {"decoder_freeze": "aux"}):
        with pytest.raises(UserError):
            RunConfig(RECIPE, m=4, steps=1, hparams=bad).resolve()


@pytest.mark.parametrize("penalty,freeze,hand_freeze", [
    ("l1", "both", "aux"), ("l1", "none", "aux"),           # the paper: aux decoder always frozen
    ("decoder_norm", "both", "both"), ("decoder_norm", "none", "none"),
])
def test_loss_terms_and_gradients_by_hand(penalty, freeze, hand_freeze):
    sae = _sae(sparsity_penalty=penalty, decoder_freeze=freeze)
    _set(sae, PARAMS)
    lam = 0.7
    t = sae.terms(X, X)
    p = {k: v.detach().clone().requires_grad_(True) for k, v in sae.params.items()}
    mse, s, aux, total = _hand_loss(p, X, lam, penalty, hand_freeze)
    assert torch.allclose(t.mse, mse.view(1), atol=1e-5)
    assert torch.allclose(t.sparsity, s.view(1), atol=1e-5)
    assert torch.allclose(t.aux, aux.view(1), atol=1e-5)
    t.total(torch.tensor([lam])).sum().backward()
    total.backward()
    for k in p:
        assert torch.allclose(sae.params[k].grad, p[k].grad, atol=1e-5), k
    # activations: gate decides, magnitude path sets the value
    gate = (X - 0.25 * torch.tensor([1.0, -1.0])) @ torch.tensor(W_GATE) + torch.tensor([0.1, -0.2])
    assert torch.equal(t.f[:, 0, :] > 0, (gate > 0) & (t.f[:, 0, :] > 0))


def test_initialisation():
    n, m, seed = 3, 5, 11
    sae = _sae(n=n, m=m)
    sae.init_params([seed], False, None)
    W_d = torch.randn(m, n, generator=torch.Generator().manual_seed(seed))
    W_d = W_d / W_d.norm(dim=1, keepdim=True)
    assert torch.allclose(sae.params["W_d"][0], W_d)
    assert torch.allclose(sae.params["W_e"][:, 0, :], W_d.T)              # W_gate = W_d^T at init
    for k in ("b_e", "b_mag", "r_mag", "b_d"):
        assert float(sae.params[k].detach().abs().max()) == 0.0, k


def test_unit_norm_steps_only_with_the_l1_penalty():
    for penalty, unit in (("l1", True), ("decoder_norm", False)):
        sae = _sae(sparsity_penalty=penalty)
        _set(sae, {"W_d": [[[0.6, 0.8], [1.0, 0.0]]]})
        sae.params["W_d"].grad = torch.tensor([[[1.0, 1.0], [2.0, 3.0]]])
        sae.adjust_grads()
        want = [[[0.16, -0.12], [0.0, 3.0]]] if unit else [[[1.0, 1.0], [2.0, 3.0]]]
        assert torch.allclose(sae.params["W_d"].grad, torch.tensor(want), atol=1e-6)
        _set(sae, {"W_d": [[[3.0, 4.0], [0.0, -2.0]]]})
        sae.after_step()
        want = [[[0.6, 0.8], [0.0, -1.0]]] if unit else [[[3.0, 4.0], [0.0, -2.0]]]
        assert torch.allclose(sae.params["W_d"].data, torch.tensor(want), atol=1e-6)


def test_flops_conventions():
    assert gated_flops_per_token(3, 5, 3) == (4 * 15 + 10 * 15, "sae-gated-4nm+10mo")
    assert gated_flops_per_token(3, 5, 3, aux_decoder_grad=True) == (4 * 15 + 12 * 15, "sae-gated-4nm+12mo")
    hp = get_recipe(RECIPE).resolve({})
    assert ARCHS["gated"].flops(3, 5, 3, hp) == (210, "sae-gated-4nm+10mo")
    hp = get_recipe(RECIPE).resolve({"sparsity_penalty": "decoder_norm", "decoder_freeze": "none"})
    assert ARCHS["gated"].flops(3, 5, 3, hp) == (240, "sae-gated-4nm+12mo")


def test_export_matches_the_model_in_raw_units():
    sae = _sae(sparsity_penalty="decoder_norm")
    _set(sae, PARAMS)
    state = sae.run_state(0)
    c = 2.0
    w = fold_weights(state, c, c, "gated", dict(sae.hp))
    assert set(w) == {"W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"}
    assert torch.allclose(w["W_dec"].norm(dim=1), torch.ones(2), atol=1e-6)
    x = torch.randn(6, 2)
    p = {k: v.detach() for k, v in sae.params.items()}
    xc = c * x - p["b_d"][0]
    gate = xc @ p["W_e"][:, 0, :] + p["b_e"][0]
    mag = xc @ (p["W_e"][:, 0, :] * p["r_mag"][0].exp()) + p["b_mag"][0]
    y = (((gate > 0) * torch.relu(mag)) @ p["W_d"][0] + p["b_d"][0]) / c
    y_exp = ENCODERS["gated"](w, {}, x) @ w["W_dec"] + w["b_dec"]
    assert torch.allclose(y, y_exp, atol=1e-5)


@pytest.fixture(scope="module")
def small_store(cache_dir):
    return synthetic_store(SMALL, cache_dir)


def test_trainer_keeps_unit_norm_decoder(small_store):
    res = train(RunConfig(RECIPE, m=16, steps=5, batch_size=64, lr=1e-2, lam=1.0), small_store,
                TrainOptions(keep_weights=True))
    assert torch.allclose(res.weights["W_d"].norm(dim=1), torch.ones(16), atol=1e-5)
    assert res.info["flops_convention"] == "sae-gated-4nm+10mo"
    assert res.info["flops_per_token"] == 4 * 32 * 16 + 10 * 16 * 32
    free = train(RunConfig(RECIPE, m=16, steps=5, batch_size=64, lr=1e-2, lam=1.0,
                           hparams={"sparsity_penalty": "decoder_norm"}), small_store, TrainOptions(keep_weights=True))
    assert float((free.weights["W_d"].norm(dim=1) - 1).abs().max()) > 1e-3


def test_quality_on_synthetic(small_store):
    """Setting for the README: m=128, 1000 steps, batch 256, lr 3e-3, lambda 4 on the small problem."""
    r = train(RunConfig(RECIPE, m=128, steps=1000, batch_size=256, lr=3e-3, lam=4.0), small_store)
    assert r.status == "ok" and r.metrics["mmcs"] >= 0.85, r.metrics


def test_resampling_is_off_by_default_and_follows_the_schedule_when_on():
    assert get_recipe(RECIPE).defaults["resample_every"] == 0
    assert not any(_sae().resample_due(d) for d in (12500, 25000))
    on = _sae(resample_every=1000, resample_last_step=3000)
    assert [d for d in (500, 1000, 2000, 3000, 4000) if on.resample_due(d)] == [1000, 2000, 3000]
    with pytest.raises(UserError, match="resample_rows"):
        RunConfig(RECIPE, m=2, steps=1, hparams={"resample_every": 10, "resample_rows": 0}).resolve()


def test_resampling_resets_a_dead_latents_gate_and_magnitude_paths():
    """A dead latent: decoder row x/||x||, gate column 0.2 x mean alive gate norm x x/||x||, b_gate = b_mag = r_mag = 0,
    Adam moments of all of them 0; the alive latent and its Adam state untouched."""
    from sae_core.optim import StackedAdam

    sae = _sae(batch_size=10, resample_dead_steps=3)
    _set(sae, dict(W_e=[[[3.0, 5.0]], [[0.0, 5.0]]], b_e=[[-100.0, -100.0]], r_mag=[[0.3, 0.7]],
                   b_mag=[[-2.0, 0.9]], W_d=[[[1.0, 0.0], [1.0, 0.0]]], b_d=[[0.0, 0.0]]))
    opt = StackedAdam(sae.params, {"W_e": 1, "b_e": 0, "W_d": 0, "b_d": 0, "b_mag": 0, "r_mag": 0})
    for state in (opt.exp_avg, opt.exp_avg_sq):
        for v in state.values():
            v.fill_(7.0)
    # gates closed (b_gate -100): x_hat = b_d = 0 and the loss is ||x||^2, so only row (0, 4) can be drawn
    sample = torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    sae.resample(1000, sample, opt, torch.tensor([[95, 0]]), tokens_seen=100)   # latent 1 silent for 100 > 30 tokens
    p = sae.params
    assert torch.allclose(p["W_d"][0, 1], torch.tensor([0.0, 1.0]))
    assert torch.allclose(p["W_e"][:, 0, 1], torch.tensor([0.0, 0.2 * 3.0]))     # latent 0's gate norm is 3
    for name in ("b_e", "b_mag", "r_mag"):
        assert float(p[name][0, 1].detach()) == 0.0, name
        for state in (opt.exp_avg, opt.exp_avg_sq):
            assert float(state[name][0, 1]) == 0.0 and float(state[name][0, 0]) == 7.0, name
    for state in (opt.exp_avg, opt.exp_avg_sq):
        assert float(state["W_d"][0, 1].abs().sum() + state["W_e"][:, 0, 1].abs().sum()) == 0.0
    assert torch.allclose(p["W_e"][:, 0, 0], torch.tensor([3.0, 0.0])) and float(p["b_mag"][0, 0].detach()) == -2.0
