"""ActivationStore writing/reading, content hash, resume; the batch stream's determinism."""

import json

import numpy as np
import pytest
import torch

from sae_core.errors import UserError
from sae_core.store import ActivationStore, StoreWriter
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.loader import BLOCK_ROWS, BatchStream, data_sample, eval_batches

from .helpers import write_store


def test_roundtrip_across_shards_and_meta(tmp_path):
    x = np.arange(10_000 * 4, dtype=np.float32).reshape(10_000, 4)
    store = write_store(tmp_path / "s", x, shard_rows=3000, eval_rows=1000)
    assert (store.n, store.o, store.count, store.train_rows) == (4, 4, 10_000, 9000)
    a, _ = store.read(2990, 3010)          # spans two shards
    assert np.array_equal(a, x[2990:3010])
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    for key in ("n", "o", "count", "dtype", "source", "content_hash", "norm_scale", "eval_rows"):
        assert key in meta
    assert len(meta["shards"]) == 4
    assert not (tmp_path / "s" / "progress.json").exists()


def test_content_hash_ignores_sharding_but_not_data(tmp_path):
    x = np.random.default_rng(0).normal(size=(5000, 8)).astype(np.float32)
    h1 = write_store(tmp_path / "a", x, shard_rows=700).content_hash
    h2 = write_store(tmp_path / "b", x, shard_rows=5000).content_hash
    x[17, 3] += 1
    h3 = write_store(tmp_path / "c", x).content_hash
    assert h1 == h2 != h3


def test_writer_resumes_after_interruption(tmp_path):
    x = np.random.default_rng(1).normal(size=(6000, 8)).astype(np.float32)
    w = StoreWriter(tmp_path / "r", 8, shard_rows=1000)
    for i in range(3):
        w.append(x[i * 1000:(i + 1) * 1000], state={"next": i + 1})
    w.append(x[3000:3500], state={"next": 3.5})   # buffered, never flushed: lost in the "crash"
    del w
    w2 = StoreWriter(tmp_path / "r", 8, shard_rows=1000)
    assert w2.rows == 3000 and w2.resume_state == {"next": 3}
    for i in range(w2.resume_state["next"], 6):
        w2.append(x[i * 1000:(i + 1) * 1000], state={"next": i + 1})
    resumed = w2.close()
    assert resumed.content_hash == write_store(tmp_path / "whole", x).content_hash


def test_writer_rejects_nan_rows_and_bad_shapes(tmp_path):
    w = StoreWriter(tmp_path / "n", 4)
    with pytest.raises(UserError, match="non-finite"):
        w.append(np.array([[0, 1, np.nan, 3]], dtype=np.float32))
    with pytest.raises(UserError, match="shape"):
        w.append(np.zeros((3, 5), dtype=np.float32))


def test_loader_rejects_store_with_nan_rows(tmp_path):
    x = np.random.default_rng(2).normal(size=(3000, 4)).astype(np.float32)
    store = write_store(tmp_path / "s", x)
    arr = np.load(tmp_path / "s" / store.meta.shards[0].x, mmap_mode="r+")
    arr[10, 2] = np.nan
    arr.flush()
    with pytest.raises(UserError, match="non-finite"):
        BatchStream(ActivationStore(tmp_path / "s"), 64, 0).batch(0)


def test_missing_and_corrupt_stores_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        ActivationStore(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="meta.json"):
        ActivationStore(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "meta.json").write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        ActivationStore(tmp_path / "bad")


def _stream_batches(stream, steps):
    return [stream.batch(s)[0].clone() for s in steps]


def test_batches_deterministic_random_access_and_cover_each_epoch(tmp_path):
    x = np.arange(2000, dtype=np.float32).reshape(2000, 1).repeat(2, 1)
    store = write_store(tmp_path / "s", x, eval_rows=400)
    s1 = BatchStream(store, 100, data_seed=7, normalize=False)
    seq = _stream_batches(s1, range(40))          # 16 batches per epoch of 1600 train rows
    s2 = BatchStream(store, 100, data_seed=7, normalize=False)
    jumped = _stream_batches(s2, [25, 3, 39])
    assert all(torch.equal(a, seq[i]) for a, i in zip(jumped, [25, 3, 39]))
    epoch0 = torch.cat(seq[:16])[:, 0].sort().values
    assert torch.equal(epoch0, torch.arange(1600, dtype=torch.float32))   # a permutation of the train split
    assert not torch.equal(torch.cat(seq[:16]), torch.cat(seq[16:32]))    # reshuffled each epoch
    other = _stream_batches(BatchStream(store, 100, data_seed=8, normalize=False), range(3))
    assert not torch.equal(other[0], seq[0])


def test_windowed_shuffle_when_split_exceeds_memory_budget(tmp_path):
    rows = 3 * BLOCK_ROWS + 500
    x = np.arange(rows, dtype=np.float32).reshape(rows, 1)
    store = write_store(tmp_path / "w", x, shard_rows=BLOCK_ROWS, eval_rows=500)
    stream = BatchStream(store, 4096, data_seed=3, normalize=False, window_rows=BLOCK_ROWS)
    assert not stream.single_window
    per_epoch = 3 * (BLOCK_ROWS // 4096)
    seen = torch.cat([stream.batch(s)[0] for s in range(per_epoch)])[:, 0]
    assert seen.unique().numel() == per_epoch * 4096                      # no row twice in an epoch
    again = BatchStream(store, 4096, data_seed=3, normalize=False, window_rows=BLOCK_ROWS)
    assert torch.equal(again.batch(per_epoch - 1)[0], stream.batch(per_epoch - 1)[0])
    stream.close()
    again.close()


def test_batches_are_normalised_and_eval_is_the_tail(tmp_path):
    x = np.random.default_rng(3).normal(size=(3000, 6)).astype(np.float32) * 4
    store = write_store(tmp_path / "s", x, eval_rows=1000)
    xb, yb = BatchStream(store, 500, 0).batch(0)
    assert xb is yb
    c = store.meta.norm_scale
    ev = torch.cat([b[0] for b in eval_batches(store, chunk_rows=300)])
    assert torch.allclose(ev, torch.from_numpy(x[2000:]) * c)
    assert data_sample(store, 50).shape == (50, 6)


def test_batch_size_larger_than_train_split_is_user_error(tmp_path):
    store = write_store(tmp_path / "s", np.ones((3000, 2), np.float32), eval_rows=1000)
    with pytest.raises(UserError, match="batch_size"):
        BatchStream(store, 4096, 0)


def test_synthetic_store_is_deterministic_and_has_ground_truth(tmp_path):
    cfg = SyntheticConfig(n=16, m_true=32, tokens=20_000, mean_active=3.0, zipf_exponent=0.5)
    a = synthetic_store(cfg, tmp_path / "a")
    b = synthetic_store(cfg, tmp_path / "b")
    assert a.content_hash == b.content_hash
    truth = a.ground_truth()
    assert truth.shape == (32, 16) and np.allclose(np.linalg.norm(truth, axis=1), 1, atol=1e-5)
    # the codes are recoverable: projecting rows onto the true directions shows ~mean_active active features
    x, _ = a.read(0, 20_000)
    assert a.meta.source["kind"] == "synthetic"
    assert np.abs(x).sum() > 0


def test_synthetic_firing_rates_follow_zipf():
    from sae_core.synthetic import generate_chunk
    cfg = SyntheticConfig(n=16, m_true=16, tokens=10_000, zipf_exponent=1.0, mean_active=2.0)
    x = generate_chunk(cfg, torch.eye(16), 0, 100_000)   # identity directions: x is the code itself
    rates = (x > 0).double().mean(0).numpy()
    assert np.allclose(rates, cfg.firing_probabilities(), atol=0.01)
    assert ((x > 0) & ((x < cfg.magnitude_low) | (x > cfg.magnitude_high))).sum() == 0


def test_synthetic_correlated_groups_keep_marginals_and_co_fire():
    from sae_core.synthetic import generate_chunk
    cfg = SyntheticConfig(n=8, m_true=8, tokens=10_000, zipf_exponent=0.0, mean_active=2.0,
                          groups=2, group_coupling=1.0)
    active = (generate_chunk(cfg, torch.eye(8), 0, 50_000) > 0).double()
    assert np.allclose(active.mean(0).numpy(), 0.25, atol=0.01)
    same_group = torch.corrcoef(active.T)[0, 2].item()     # features 0 and 2 share group 0
    other_group = torch.corrcoef(active.T)[0, 1].item()
    assert same_group > 0.9 and abs(other_group) < 0.05
