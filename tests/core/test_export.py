"""The export's cfg.json is SAELens 6's layout (metadata, hooks never null); raw-unit encoders match hand formulas."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sae_core.config import RunConfig
from sae_core.arch import ARCHS
from sae_core.export import ExportedSAE, export_sae, fold_weights, load_sae, saelens_metadata
from sae_core.train import TrainOptions, train
from tests.core.helpers import write_store


def _export(tmp_path, recipe, transcoder):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 6)).astype(np.float32)
    y = (x @ rng.normal(size=(6, 5))).astype(np.float32) if transcoder else None
    store = write_store(tmp_path / "s", x, y, eval_rows=500)
    res = train(RunConfig(recipe, m=8, steps=3, batch_size=100, hparams={}), store, TrainOptions(keep_weights=True))
    out = export_sae(res.weights, res.run, store, tmp_path / "e")
    return res, store, out, json.loads((out / "cfg.json").read_text())


def test_sae_cfg_is_saelens6_layout(tmp_path):
    res, store, out, cfg = _export(tmp_path, "anthropic-2024-04", False)
    assert cfg["architecture"] == "standard"
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"], cfg["device"]) == (6, 8, "float32", "cpu")
    assert cfg["apply_b_dec_to_input"] is False and cfg["normalize_activations"] == "none"
    assert cfg["metadata"] == {"sae_lens_version": "6.0.0", "model_name": "saescale-test", "hook_name": "input"}
    assert "hook_name" not in cfg and "model_name" not in cfg       # SAELens 6 reads them from metadata only
    assert cfg["saescale"]["recipe"] == "anthropic-2024-04" and cfg["saescale"]["source_kind"] == "test"
    # the weights are the folded state, bit for bit
    folded = fold_weights(res.weights, store.meta.norm_scale, store.meta.target_norm_scale, "relu", dict(res.run.hp))
    saved = load_file(str(out / "sae_weights.safetensors"))
    assert saved.keys() == folded.keys() and all(torch.equal(saved[k], folded[k]) for k in saved)


def test_transcoder_cfg_names_output_hook(tmp_path):
    _, _, _, cfg = _export(tmp_path, "anthropic-2025-02", True)
    assert cfg["architecture"] == "jumprelu_transcoder" and cfg["d_out"] == 5
    assert cfg["metadata"]["hook_name"] == "input" and cfg["metadata"]["hook_name_out"] == "output"


def test_metadata_of_a_language_model_store():
    src = {"kind": "lm", "model": "smollm2-135m", "hook_name": "blocks.3.hook_resid_post",
           "hook_name_out": "blocks.3.hook_mlp_out", "seq_len": 128, "layer": 3}
    assert saelens_metadata(src, transcoder=True) == {
        "sae_lens_version": "6.0.0", "model_name": "smollm2-135m", "hook_name": "blocks.3.hook_resid_post",
        "hook_name_out": "blocks.3.hook_mlp_out", "context_size": 128}
    assert saelens_metadata({}, transcoder=False) == {
        "sae_lens_version": "6.0.0", "model_name": "saescale-unknown", "hook_name": "input"}


def test_topk_fields_and_encoder_by_hand():
    assert ARCHS["topk"].export_config({"k": 2, "lambda": 1.0}) == {"k": 2, "rescale_acts_by_decoder_norm": False}
    w = {"W_enc": torch.eye(4), "b_enc": torch.tensor([0.0, 0.0, 0.0, -10.0]),
         "W_dec": torch.eye(4), "b_dec": torch.zeros(4)}
    sae = ExportedSAE(w, {"architecture": "topk", "k": 2})
    f = sae.encode(torch.tensor([[3.0, -1.0, 2.0, 5.0], [-1.0, -2.0, -3.0, 20.0]]))
    # row 1: h = [3, -1, 2, -5] -> keep 3 and 2; row 2: h = [-1, -2, -3, 10] -> top two are 10, -1; ReLU drops -1
    assert torch.equal(f, torch.tensor([[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 10.0]]))


def test_gated_encoder_by_hand():
    w = {"W_enc": torch.tensor([[1.0, 2.0]]), "b_gate": torch.tensor([-1.0, 0.5]),
         "r_mag": torch.log(torch.tensor([3.0, 0.5])), "b_mag": torch.tensor([0.25, -1.5]),
         "W_dec": torch.ones(2, 1), "b_dec": torch.zeros(1)}
    f = ExportedSAE(w, {"architecture": "gated"}).encode(torch.tensor([[2.0], [0.5]]))
    # x=2: gates (2-1>0, 4+0.5>0) open; magnitudes ReLU(2*3+0.25)=6.25, ReLU(4*0.5-1.5)=0.5
    # x=0.5: gate 1 closed (0.5-1<0) though its magnitude 1.75 > 0; gate 2 open, magnitude ReLU(1*0.5-1.5)=0
    assert torch.allclose(f, torch.tensor([[6.25, 0.5], [0.0, 0.0]]))


def test_unknown_architecture_is_a_user_error(tmp_path):
    from sae_core.errors import UserError
    sae = ExportedSAE({"W_enc": torch.eye(2), "b_enc": torch.zeros(2)}, {"architecture": "matching_pursuit"})
    with pytest.raises(UserError, match="matching_pursuit"):
        sae.encode(torch.ones(1, 2))
    with pytest.raises(UserError, match="cannot read"):
        load_sae(tmp_path / "missing")
