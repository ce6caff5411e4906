"""Pins every eval metric definition (DESIGN section 4) and MMCS against hand formulas and numbers."""

import math

import pytest
import torch

from sae_core.arch import ARCHS
from sae_core.config import RunConfig
from sae_core.metrics import evaluate, mmcs

from . import pin_reference as ref

N, M, K = 4, 6, 2
LAMS = torch.tensor([1.5, 0.25])


def _sae(recipe):
    run = RunConfig(recipe, m=M, steps=10).resolve()
    sae = ARCHS[run.recipe.arch](K, N, N, M, dict(run.hp))
    gen = torch.Generator().manual_seed(3)
    sae.params = {
        "W_e": torch.randn(N, K, M, generator=gen), "b_e": torch.randn(K, M, generator=gen) * 0.3,
        "W_d": torch.randn(K, M, N, generator=gen) * 0.7, "b_d": torch.randn(K, N, generator=gen) * 0.1,
    }
    if run.recipe.arch == "jumprelu":
        sae.params["log_threshold"] = torch.full((K, M), -0.5)
    return sae


def _batches():
    """Three uneven batches with a non-zero mean and one all-zero row (excluded from l2_ratio)."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(23, N, generator=gen) + torch.tensor([2.0, -1.0, 0.5, 0.0])
    x[5] = 0.0
    return [(x[:10], x[:10]), (x[10:11], x[10:11]), (x[11:], x[11:])], x


@pytest.mark.parametrize("recipe", ["anthropic-2024-04", "anthropic-2025-02"])
def test_evaluate_matches_hand_formulas(recipe):
    sae = _sae(recipe)
    batches, x = _batches()
    out = evaluate(sae, batches, LAMS)
    xd = x.double()
    for k in range(K):
        p = {n: t[:, k, :] if n == "W_e" else t[k] for n, t in sae.params.items()}
        p = {n: t.double() for n, t in p.items()}
        if recipe == "anthropic-2024-04":
            rows = ref.relu_rows(xd, xd, p["W_e"], p["b_e"], p["W_d"], p["b_d"])
        else:
            rows = ref.jumprelu_rows(xd, xd, p["W_e"], p["b_e"], p["W_d"], p["b_d"], p["log_threshold"])
        expected = ref.eval_metrics(rows[0], rows[1], xd, p["W_d"].norm(dim=1), rows[2], rows[3], float(LAMS[k]))
        assert set(expected) <= set(out[k])
        for key, value in expected.items():
            assert out[k][key] == pytest.approx(value, rel=1e-5, abs=1e-9), (key, k)
        assert out[k]["fvu"] > out[k]["nmse"]                       # centring matters on this data
        # the loss is the objective at the final lambda, with the (tiny, lambda_P = 3e-6) pre-act term
        parts = out[k]["mse"] + float(LAMS[k]) * out[k]["sparsity_term"] + out[k]["aux_term"]
        assert out[k]["loss"] == pytest.approx(parts, rel=1e-12, abs=0)
        assert out[k]["aux_term"] == pytest.approx(expected["aux_term"], rel=1e-5, abs=0)
        assert (out[k]["aux_term"] > 0) == (recipe == "anthropic-2025-02")
        assert out[k]["sparsity_term"] > 0 and out[k]["loss"] > out[k]["mse"]


def test_evaluate_dense_and_dead_thresholds_by_hand():
    """Hand-set activations: firing rates 0, 1/10, 2/10 and 1 give dense_frac 2/4 and dead 1/4."""
    run = RunConfig("anthropic-2024-04", m=4, steps=10).resolve()
    sae = ARCHS["relu"](1, 1, 1, 4, dict(run.hp))
    # f_i = ReLU(x - a_i) with x = 0..9: feature thresholds a = 100 (never), 8 (x=9 only), 7 (x=8,9), -1 (always)
    sae.params = {"W_e": torch.ones(1, 1, 4), "b_e": -torch.tensor([[100.0, 8.0, 7.0, -1.0]]),
                  "W_d": torch.full((1, 4, 1), 0.5), "b_d": torch.zeros(1, 1)}
    x = torch.arange(10.0).unsqueeze(1)
    out = evaluate(sae, [(x, x)], torch.tensor([0.0]))[0]
    assert out["dense_frac"] == 0.5            # rates 0.2 and 1.0 are > 0.1; 0.1 is not
    assert out["eval_dead_frac"] == 0.25
    assert out["l0"] == pytest.approx((0 + 1 + 2 + 10) / 10)
    # l1 = mean over rows of sum_i f_i * 0.5: f sums 0, 1, 1+2, sum(x+1) = 55
    assert out["l1"] == pytest.approx(0.5 * (0 + 1 + 3 + 55) / 10)


def test_mmcs_by_hand():
    """Signed cosines, best learned row per TRUE direction, recovered above 0.9 (0.85 is not)."""
    dec = torch.tensor([[1.0, 0.0], [3.0, 3.0]])
    truth = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, -1.0], [-1.0, 0.0], [0.95, 0.3122499], [0.85, -0.5267827]])
    value, recovered = mmcs(dec, truth)
    r = 1 / math.sqrt(2)
    c5 = 0.95 / math.hypot(0.95, 0.3122499)   # ~0.95 with row 0
    best = [1.0, r, r, -r, c5, 0.85]          # the last: cos 0.85 with row 0, ~0.23 with row 1
    assert value == pytest.approx(sum(best) / 6, rel=1e-6)
    assert recovered == pytest.approx(2 / 6)
    assert (value, recovered) == pytest.approx(ref.mmcs(dec.double(), truth.double()), rel=1e-6)
