"""Pins decoder-norm folding at export (seeds 004/000) with the normalisation scale folded back."""

import numpy as np
import pytest
import torch

from sae_core.config import RunConfig
from sae_core.export import export_sae, fold_weights, load_sae

from .helpers import write_store

CX, CY = 2.0, 0.25


def _state(jump: bool):
    gen = torch.Generator().manual_seed(9)
    state = {"W_e": torch.randn(3, 4, generator=gen), "b_e": torch.randn(4, generator=gen),
             "W_d": torch.randn(4, 5, generator=gen) * torch.tensor([[2.0], [0.5], [1.0], [0.0]]),
             "b_d": torch.randn(5, generator=gen)}
    if jump:
        state["log_threshold"] = torch.tensor([0.1, -0.3, 0.4, 0.2])
    return state


@pytest.mark.parametrize("arch", ["relu", "jumprelu"])
def test_fold_by_hand_formulas(arch):
    st = {k: v.double() for k, v in _state(arch == "jumprelu").items()}
    out = fold_weights(_state(arch == "jumprelu"), CX, CY, arch, {})
    s = (st["W_d"] / CY).norm(dim=1)
    s_safe = torch.where(s > 0, s, torch.ones_like(s))       # an all-zero decoder row stays as it is
    assert float(s[3]) == 0.0
    expected = {"W_enc": st["W_e"] * CX * s_safe, "b_enc": st["b_e"] * s_safe,
                "W_dec": st["W_d"] / CY / s_safe.unsqueeze(1), "b_dec": st["b_d"] / CY}
    if arch == "jumprelu":
        expected["threshold"] = st["log_threshold"].exp() * s_safe
    assert set(out) == set(expected)
    for k, v in expected.items():
        assert torch.allclose(out[k].double(), v, rtol=1e-6, atol=1e-7), k
    assert torch.allclose(out["W_dec"][:3].norm(dim=1), torch.ones(3), atol=1e-6)


@pytest.mark.parametrize("recipe", ["anthropic-2024-04", "anthropic-2025-02"])
@pytest.mark.parametrize("normalize", [True, False])
def test_export_predicts_in_raw_units(tmp_path, recipe, normalize):
    """The exported SAE on raw x equals the trained one on c x, divided by c (identical predictions)."""
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(3000, 3)) * 5 + 1).astype(np.float32)
    store = write_store(tmp_path / "s", x, eval_rows=500)
    run = RunConfig(recipe, m=4, steps=10, hparams={"normalize": normalize}).resolve()
    state = _state(recipe == "anthropic-2025-02")
    state["W_d"] = state["W_d"][:, :3] + 0.1
    state["b_d"] = state["b_d"][:3]
    sae = load_sae(export_sae(state, run, store, tmp_path / "e"))
    c = float(np.sqrt(3) / np.linalg.norm(x[:2500].astype(np.float64), axis=1).mean()) if normalize else 1.0
    assert sae.config["architecture"] == ("standard" if recipe == "anthropic-2024-04" else "jumprelu")
    xr = torch.from_numpy(x[:200]).double()
    st = {k: v.double() for k, v in state.items()}
    h = (c * xr) @ st["W_e"] + st["b_e"]
    thr = st["log_threshold"].exp() if "log_threshold" in st else torch.zeros(4, dtype=torch.float64)
    f = h * (h > thr)
    expected = (f @ st["W_d"] + st["b_d"]) / c
    got = sae(xr.float()).double()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert torch.allclose(sae.weights["W_dec"].norm(dim=1), torch.ones(4), atol=1e-5)
