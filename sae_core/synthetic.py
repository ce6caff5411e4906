"""Synthetic superposition data with known ground truth, written as an ActivationStore.

m_true unit directions in R^n; feature i fires with a Zipf-like probability
p_i = mean_active * (i+1)^-zipf_exponent / sum_j (j+1)^-zipf_exponent (capped at 1), with a
magnitude drawn from U(magnitude_low, magnitude_high); x = sum_i a_i d_i (+ Gaussian noise).
Optional correlated groups: features are split into `groups` groups, and with probability
`group_coupling` a feature's firing decision uses its group's shared uniform draw instead of
its own, so features in a group co-fire while each keeps its marginal rate p_i exactly.
The true directions are saved in the store for MMCS.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sae_core.errors import UserError
from sae_core.config import stable_hash
from sae_core.store import ActivationStore, StoreWriter


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the generator; the store is a pure function of them."""

    n: int = 64
    m_true: int = 512
    tokens: int = 1_000_000
    seed: int = 0
    zipf_exponent: float = 1.0
    mean_active: float = 5.0
    magnitude_low: float = 0.5
    magnitude_high: float = 1.5
    groups: int = 0
    group_coupling: float = 0.0
    noise_std: float = 0.0

    def validate(self) -> None:
        for name in ("n", "m_true", "tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise UserError(f"synthetic {name} must be a positive integer, got {v!r}")
        if self.tokens < 2048:
            raise UserError(f"synthetic tokens must be at least 2048, got {self.tokens}")
        if not 0 < self.mean_active <= self.m_true:
            raise UserError(f"synthetic mean_active must be in (0, m_true], got {self.mean_active}")
        if not 0 <= self.magnitude_low <= self.magnitude_high or self.magnitude_high <= 0:
            raise UserError("synthetic magnitudes need 0 <= magnitude_low <= magnitude_high, magnitude_high > 0")
        if self.groups < 0 or not 0 <= self.group_coupling <= 1:
            raise UserError("synthetic groups must be >= 0 and group_coupling in [0, 1]")
        if self.noise_std < 0:
            raise UserError(f"synthetic noise_std must be >= 0, got {self.noise_std}")

    def firing_probabilities(self) -> np.ndarray:
        w = (np.arange(1, self.m_true + 1, dtype=np.float64)) ** (-self.zipf_exponent)
        return np.minimum(1.0, self.mean_active * w / w.sum())

    def key(self) -> str:
        return stable_hash({"generator": "superposition-v1", **asdict(self)})


def true_directions(cfg: SyntheticConfig) -> torch.Tensor:
    """The m_true ground-truth unit directions [m_true, n] (random, seeded)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    d = torch.randn(cfg.m_true, cfg.n, generator=gen, dtype=torch.float64)
    return (d / d.norm(dim=1, keepdim=True)).float()


def generate_chunk(cfg: SyntheticConfig, directions: torch.Tensor, index: int, rows: int) -> torch.Tensor:
    """Rows of chunk `index`; each chunk has its own generator so chunks are independent of order.

    Independent features are sampled sparsely: feature i's firing rows are a Bernoulli(p_i)
    process drawn by geometric gaps, so the cost scales with the number of firings, not
    rows x m_true. Correlated groups need shared uniforms and use the dense path.
    """
    rng = np.random.default_rng([cfg.seed, index, 0x5AE])
    p = cfg.firing_probabilities()
    if cfg.groups > 0 and cfg.group_coupling > 0:
        u = rng.random((rows, cfg.m_true), dtype=np.float32)
        shared = rng.random((rows, cfg.groups), dtype=np.float32)[:, np.arange(cfg.m_true) % cfg.groups]
        u = np.where(rng.random((rows, cfg.m_true), dtype=np.float32) < cfg.group_coupling, shared, u)
        row_idx, feat_idx = np.nonzero(u < p.astype(np.float32))
    else:
        row_parts, feat_parts = [], []
        for i, pi in enumerate(p):
            fired = _bernoulli_rows(rng, float(pi), rows)
            row_parts.append(fired)
            feat_parts.append(np.full(fired.shape, i))
        row_idx, feat_idx = np.concatenate(row_parts), np.concatenate(feat_parts)
    mags = rng.uniform(cfg.magnitude_low, cfg.magnitude_high, size=row_idx.shape[0]).astype(np.float32)
    codes = torch.sparse_coo_tensor(np.stack([row_idx, feat_idx]), torch.from_numpy(mags), (rows, cfg.m_true),
                                    check_invariants=True)
    x = torch.sparse.mm(codes, directions)
    if cfg.noise_std > 0:
        x = x + cfg.noise_std * torch.from_numpy(rng.standard_normal((rows, cfg.n), dtype=np.float32))
    return x


def _bernoulli_rows(rng: np.random.Generator, p: float, rows: int) -> np.ndarray:
    """Sorted indices in [0, rows) of a Bernoulli(p) process, drawn as geometric gaps."""
    if p <= 0:
        return np.zeros(0, dtype=np.int64)
    out, pos = [], -1
    while True:
        expected = (rows - pos) * p
        gaps = rng.geometric(p, size=int(expected + 5 * np.sqrt(expected) + 16))
        idx = pos + np.cumsum(gaps)
        keep = idx[idx < rows]
        out.append(keep)
        if len(keep) < len(idx):
            return np.concatenate(out)
        pos = int(idx[-1])


def synthetic_store(cfg: SyntheticConfig, cache_dir: str | os.PathLike[str]) -> ActivationStore:
    """The store for `cfg` under cache_dir (generated once, reused after; keyed by cfg)."""
    cfg.validate()
    path = Path(cache_dir) / f"synthetic-{cfg.key()}"
    if (path / "meta.json").exists():
        return ActivationStore(path)
    # Write beside the final path and rename, so concurrent callers never see a partial store.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    directions = true_directions(cfg)
    chunk = max(1024, min(65536, (1 << 25) // cfg.m_true))
    writer = StoreWriter(tmp, cfg.n, source={"kind": "synthetic", **asdict(cfg)},
                         shard_rows=1 << 18, overwrite=True)
    for index in range(math.ceil(cfg.tokens / chunk)):
        rows = min(chunk, cfg.tokens - index * chunk)
        writer.append(generate_chunk(cfg, directions, index, rows).numpy(), state=index)
    writer.close(ground_truth=directions.numpy())
    try:
        os.rename(tmp, path)
    except OSError:
        if not (path / "meta.json").exists():
            raise
        shutil.rmtree(tmp)  # another process finished the same store first
    return ActivationStore(path)
