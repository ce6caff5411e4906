"""Each recipe's export loads in SAELens 6 (`SAE.load_from_disk`) and predicts what we predict.

Runs only where `sae_lens` is importable (`make interop` builds .venv-interop with it). Two
comparisons per export, on held-out raw rows:
- SAELens against saescale's own loader of the export (`load_sae`), same formulas: bit for bit;
- SAELens against the trained model itself (normalised units, decoder norms not folded):
  the features f_i ||W_d,i|| / c_y and the prediction y_hat / c_y, to float32 round-off.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sae_core.arch import ARCHS, RUN_DIMS
from sae_core.config import RunConfig
from sae_core.export import export_sae, load_sae
from sae_core.recipes import get_recipe, recipe_names
from sae_core.train import TrainOptions, train
from tests.core.helpers import write_store
from tests.interop.classification import ABSENT, saelens_arch

pytestmark = pytest.mark.interop
sae_lens = pytest.importorskip("sae_lens")

N, O, M = 16, 12, 64
CASES = [(r, False) for r in recipe_names()] + [(r, True) for r in recipe_names() if get_recipe(r).supports_transcoder]


def _model_prediction(run, state, x_norm, y_norm):
    """(f [B, m], y_hat [B, o]) of the trained run in normalised units, by its own architecture."""
    model = ARCHS[run.recipe.arch](1, x_norm.shape[1], y_norm.shape[1], run.m, dict(run.hp))
    model.params = {k: v.unsqueeze(RUN_DIMS[k]).clone() for k, v in state.items() if k in RUN_DIMS}
    extra = {k: v.unsqueeze(0).clone() for k, v in state.items() if k not in RUN_DIMS}
    if extra:                    # per-run buffers, e.g. BatchTopK's inference threshold
        model.buffers = extra
    with torch.no_grad():
        t = model.terms(x_norm, y_norm)
    return t.f[:, 0, :], t.y_hat[0]


@pytest.mark.parametrize("recipe,transcoder", CASES, ids=[f"{r}{'-transcoder' if t else ''}" for r, t in CASES])
def test_export_loads_in_saelens_and_agrees(tmp_path, recipe, transcoder, interop_report):
    expected_arch = saelens_arch(recipe)
    if expected_arch.startswith(ABSENT):
        pytest.skip(f"{recipe}: {expected_arch}")
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(9000, N)) * 2 + 0.5).astype(np.float32)
    y = (x @ rng.normal(size=(N, O)) * 0.3).astype(np.float32) if transcoder else None
    store = write_store(tmp_path / "store", x, y, eval_rows=1000)
    topk = "k" in get_recipe(recipe).defaults       # TopK recipes: sparsity is k (small here), lambda must be 0
    run = RunConfig(recipe, m=M, steps=60, batch_size=256, lr=3e-3, lam=None if topk else 0.5,
                    hparams={"k": 8} if topk else {})
    res = train(run, store,
                TrainOptions(keep_weights=True))
    out = export_sae(res.weights, res.run, store, tmp_path / "export")
    arch = f"{expected_arch}_transcoder" if transcoder else expected_arch
    assert json.loads((out / "cfg.json").read_text())["architecture"] == arch

    lens = sae_lens.SAE.load_from_disk(out)
    assert lens.cfg.architecture() == arch
    assert lens.cfg.metadata.hook_name == "input"
    xr = torch.from_numpy(x[-512:])
    with torch.no_grad():
        f_lens = lens.encode(xr)
        y_lens = lens.decode(f_lens)
    assert (f_lens != 0).any(), "no feature fired: the comparison would be vacuous"

    ours = load_sae(out)
    f_ours = ours.encode(xr)
    y_ours = ours.decode(f_ours)

    sx, sy = store.meta.norm_scale, store.meta.target_norm_scale
    yr = torch.from_numpy(y[-512:]) if transcoder else xr
    f_model, y_model = _model_prediction(res.run, res.weights, xr * sx, yr * sy)
    f_model = f_model * (res.weights["W_d"].norm(dim=1) / sy)     # the folded ("conceptual") features
    y_model = y_model / sy

    interop_report.append({
        "recipe": recipe + ("-transcoder" if transcoder else ""), "saelens": arch,
        "enc_vs_loader": float((f_lens - f_ours).abs().max()), "dec_vs_loader": float((y_lens - y_ours).abs().max()),
        "enc_vs_model": float((f_lens - f_model).abs().max()), "dec_vs_model": float((y_lens - y_model).abs().max()),
        "max_abs_y": float(y_model.abs().max()),
    })
    assert torch.equal(f_lens, f_ours) and torch.equal(y_lens, y_ours)      # same formulas, same bits
    assert torch.allclose(f_lens, f_model, rtol=1e-4, atol=1e-4 * float(f_model.abs().max()))
    assert torch.allclose(y_lens, y_model, rtol=1e-4, atol=1e-4 * float(y_model.abs().max()))
