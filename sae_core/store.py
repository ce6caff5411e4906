"""ActivationStore: sharded, memory-mappable activations on disk with a meta.json.

Layout of a store directory::

    meta.json          n, o, count, dtype, shards, source, content_hash, norm scales, split
    x_00000.npy ...    inputs, one .npy per shard (np.load(mmap_mode="r") maps them)
    y_00000.npy ...    targets, only for transcoder stores (o != n or y != x)
    ground_truth.npy   optional true feature directions (synthetic stores) for MMCS

Rows are stored in the order they were produced; the loader shuffles. The eval split is the
last `eval_rows` rows (the tail, so for text it comes from documents the training rows never
saw), fixed when the store is written. Normalisation (seed 004/000: one scalar c with
E||c x||_2 = sqrt(n)) is estimated here on the train split and applied by the loader; the raw
values on disk are never rescaled.

The content hash covers the array data in row order (not shard boundaries or file headers), so
a store written in one go and one resumed after an interruption hash the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sae_core.errors import UserError
from sae_core.files import atomic_write_bytes

FORMAT_VERSION = 1
NORM_CONVENTION = "E||c x||_2 = sqrt(n)"
_DTYPES = {"float32": np.float32, "float16": np.float16}
_NORM_SAMPLE_ROWS = 100_000


def default_eval_rows(count: int) -> int:
    """Held-out rows for a store of `count` rows: 5%, at least 1024 (or half), at most 131072."""
    return int(min(131_072, max(min(1024, count // 2), count // 20)))


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


@dataclass(frozen=True)
class ShardInfo:
    """One shard: its files and row count."""

    x: str
    rows: int
    y: str | None = None


@dataclass
class StoreMeta:
    """The contents of meta.json."""

    n: int
    o: int
    count: int
    dtype: str
    shards: list[ShardInfo]
    source: dict[str, Any]
    content_hash: str
    norm_scale: float
    target_norm_scale: float
    eval_rows: int
    has_targets: bool
    ground_truth: str | None = None
    norm_convention: str = NORM_CONVENTION
    created: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["shards"] = [s.__dict__ for s in self.shards]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StoreMeta:
        d = dict(d)
        d["shards"] = [ShardInfo(**s) for s in d["shards"]]
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise UserError(f"meta.json: unknown field(s) {sorted(unknown)}")
        return cls(**d)


class ActivationStore:
    """Read side of a store: metadata, mmap'd row ranges, the fixed train/eval split."""

    def __init__(self, path: str | os.PathLike[str], meta: StoreMeta | None = None):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        self._mmaps: dict[str, np.ndarray] = {}
        if meta is not None:  # the writer's view before meta.json exists
            self.meta = meta
            self._offsets = np.cumsum([0] + [s.rows for s in meta.shards])
            return
        if not self.path.exists():
            raise UserError(f"activation store not found: {self.path}")
        if not meta_path.is_file():
            raise UserError(f"not an activation store (no meta.json): {self.path}")
        try:
            raw = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"unreadable store metadata {meta_path}: {exc}") from None
        try:
            self.meta = StoreMeta.from_json(raw)
        except TypeError as exc:
            raise UserError(f"malformed store metadata {meta_path}: {exc}") from None
        if self.meta.dtype not in _DTYPES:
            raise UserError(f"{meta_path}: dtype must be one of {sorted(_DTYPES)}, got {self.meta.dtype!r}")
        self._offsets = np.cumsum([0] + [s.rows for s in self.meta.shards])
        if int(self._offsets[-1]) != self.meta.count:
            raise UserError(f"{meta_path}: shard rows sum to {int(self._offsets[-1])}, count says {self.meta.count}")

    # -- metadata -------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.meta.n

    @property
    def o(self) -> int:
        return self.meta.o

    @property
    def count(self) -> int:
        return self.meta.count

    @property
    def content_hash(self) -> str:
        return self.meta.content_hash

    @property
    def store_id(self) -> str:
        """Short stable identity of the data: the first 16 hex digits of the content hash."""
        return self.meta.content_hash[:16]

    @property
    def train_rows(self) -> int:
        return self.meta.count - self.meta.eval_rows

    @property
    def train_range(self) -> tuple[int, int]:
        return 0, self.train_rows

    @property
    def eval_range(self) -> tuple[int, int]:
        return self.train_rows, self.meta.count

    def ground_truth(self) -> np.ndarray | None:
        """True unit feature directions [m_true, n] when the store has them (synthetic data)."""
        if not self.meta.ground_truth:
            return None
        return np.load(self.path / self.meta.ground_truth)

    # -- data -----------------------------------------------------------------------------
    def _array(self, name: str) -> np.ndarray:
        arr = self._mmaps.get(name)
        if arr is None:
            file = self.path / name
            try:
                arr = np.load(file, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise UserError(f"unreadable shard {file}: {exc}") from None
            self._mmaps[name] = arr
        return arr

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows [start, stop) as float32 arrays (x [r, n], y [r, o] or None); spans shards."""
        if not 0 <= start <= stop <= self.count:
            raise IndexError(f"rows [{start}, {stop}) outside store of {self.count}")
        xs, ys = [], []
        first = int(np.searchsorted(self._offsets, start, side="right")) - 1
        for i in range(max(first, 0), len(self.meta.shards)):
            lo, hi = int(self._offsets[i]), int(self._offsets[i + 1])
            if lo >= stop:
                break
            a, b = max(start, lo) - lo, min(stop, hi) - lo
            shard = self.meta.shards[i]
            xs.append(self._array(shard.x)[a:b])
            if shard.y is not None:
                ys.append(self._array(shard.y)[a:b])
        x = np.concatenate(xs).astype(np.float32) if xs else np.zeros((0, self.n), np.float32)
        y = (np.concatenate(ys).astype(np.float32) if ys else np.zeros((0, self.o), np.float32)) if self.meta.has_targets else None
        return x, y

    def verify(self, chunk_rows: int = 65536) -> None:
        """Refuse a store with non-finite values (NaN or inf), in the train or the eval split.

        A sweep calls this before any task starts: such rows make every run fail (or diverge)
        after training, so they must be one UserError naming the store, split and first row.
        """
        for split, (lo, hi) in (("train", self.train_range), ("eval", self.eval_range)):
            for start in range(lo, hi, chunk_rows):
                for name, a in zip(("x", "y"), self.read(start, min(hi, start + chunk_rows))):
                    if a is None:
                        continue
                    bad = ~np.isfinite(a).all(axis=1)
                    if bad.any():
                        raise UserError(f"activation store {self.path}: non-finite values (NaN or inf) in {name} of "
                                        f"the {split} split, first at row {start + int(np.argmax(bad))}; "
                                        "regenerate or clean the store")

    def describe(self) -> dict[str, Any]:
        """The identity fields every result row records about its data."""
        return {
            "store_id": self.store_id,
            "store_hash": self.content_hash,
            "store_path": str(self.path),
            "norm_scale": self.meta.norm_scale,
            "target_norm_scale": self.meta.target_norm_scale,
            "source": self.meta.source.get("kind", "unknown"),
        }


class StoreWriter:
    """Append rows, flush them as atomic shards, finish by writing meta.json.

    Resumable: every flushed shard is recorded in `progress.json` together with the caller's
    `state` (e.g. the text position reached), so a writer reopened on an unfinished store
    continues after the last flushed shard; `resume_state` tells the caller where to restart.
    Rows are validated (finite) as they arrive.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n: int,
        o: int | None = None,
        *,
        dtype: str = "float32",
        shard_rows: int = 1 << 18,
        source: dict[str, Any] | None = None,
        has_targets: bool = False,
        overwrite: bool = False,
    ):
        if dtype not in _DTYPES:
            raise UserError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if n <= 0 or (o is not None and o <= 0):
            raise UserError(f"store dimensions must be positive, got n={n}, o={o}")
        self.path = Path(path)
        self.n, self.o = int(n), int(o if o is not None else n)
        self.dtype = dtype
        self.shard_rows = int(shard_rows)
        self.source = dict(source or {})
        self.has_targets = has_targets
        if (self.path / "meta.json").exists():
            if not overwrite:
                raise UserError(f"activation store already exists: {self.path} (pass overwrite to replace it)")
            for f in self.path.iterdir():
                if f.is_file():
                    f.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        self._progress_path = self.path / "progress.json"
        self.shards: list[ShardInfo] = []
        self.resume_state: Any = None
        if self._progress_path.exists() and not overwrite:
            prog = json.loads(self._progress_path.read_text())
            if (prog["n"], prog["o"], prog["dtype"], prog["has_targets"]) != (self.n, self.o, dtype, has_targets):
                raise UserError(f"{self.path}: unfinished store has a different shape or dtype; remove it or overwrite")
            self.shards = [ShardInfo(**s) for s in prog["shards"]]
            self.resume_state = prog.get("state")
        self._buf_x: list[np.ndarray] = []
        self._buf_y: list[np.ndarray] = []
        self._buffered = 0
        self._state: Any = self.resume_state

    @property
    def rows(self) -> int:
        """Rows flushed so far (rows still in the buffer are not counted)."""
        return sum(s.rows for s in self.shards)

    def append(self, x: np.ndarray, y: np.ndarray | None = None, state: Any = None) -> None:
        """Buffer rows x [r, n] (and y [r, o]); `state` is the source position after them."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n:
            raise UserError(f"rows must have shape [r, {self.n}], got {list(x.shape)}")
        if not np.isfinite(x).all():
            raise UserError(f"non-finite values in rows appended to {self.path}")
        if self.has_targets:
            if y is None or np.asarray(y).shape != (x.shape[0], self.o):
                raise UserError(f"targets must have shape [{x.shape[0]}, {self.o}]")
            y = np.asarray(y)
            if not np.isfinite(y).all():
                raise UserError(f"non-finite values in targets appended to {self.path}")
            self._buf_y.append(y.astype(_DTYPES[self.dtype]))
        self._buf_x.append(x.astype(_DTYPES[self.dtype]))
        self._buffered += x.shape[0]
        self._state = state
        if self._buffered >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as shards of at most `shard_rows` and record them in progress.json.

        The caller's state belongs to the end of the buffer, so it is recorded once all of the
        buffer's shards are on disk; a crash mid-flush leaves only unrecorded (ignored) files.
        """
        if not self._buffered:
            return
        x = np.concatenate(self._buf_x)
        y = np.concatenate(self._buf_y) if self.has_targets else None
        for lo in range(0, x.shape[0], self.shard_rows):
            hi = min(x.shape[0], lo + self.shard_rows)
            i = len(self.shards)
            xname = f"x_{i:05d}.npy"
            _atomic_save_npy(self.path / xname, x[lo:hi])
            yname = None
            if y is not None:
                yname = f"y_{i:05d}.npy"
                _atomic_save_npy(self.path / yname, y[lo:hi])
            self.shards.append(ShardInfo(x=xname, rows=hi - lo, y=yname))
        self._buf_x, self._buf_y, self._buffered = [], [], 0
        prog = {
            "n": self.n, "o": self.o, "dtype": self.dtype, "has_targets": self.has_targets,
            "shards": [s.__dict__ for s in self.shards], "state": self._state,
        }
        atomic_write_bytes(self._progress_path, json.dumps(prog).encode())

    def close(self, *, eval_rows: int | None = None, ground_truth: np.ndarray | None = None,
              extra: dict[str, Any] | None = None) -> ActivationStore:
        """Flush, hash, estimate the normalisation scales, write meta.json; return the reader."""
        self.flush()
        count = self.rows
        if count < 2:
            raise UserError(f"activation store {self.path} would hold {count} rows; need at least 2")
        eval_rows = default_eval_rows(count) if eval_rows is None else int(eval_rows)
        if not 0 < eval_rows < count:
            raise UserError(f"eval_rows must be in (0, {count}), got {eval_rows}")
        gt_name = None
        if ground_truth is not None:
            gt_name = "ground_truth.npy"
            _atomic_save_npy(self.path / gt_name, np.asarray(ground_truth, dtype=np.float32))
        content_hash = _content_hash(self.path, self.shards, self.n, self.o, self.dtype)
        meta = StoreMeta(
            n=self.n, o=self.o, count=count, dtype=self.dtype, shards=self.shards, source=self.source,
            content_hash=content_hash, norm_scale=1.0, target_norm_scale=1.0, eval_rows=eval_rows,
            has_targets=self.has_targets, ground_truth=gt_name,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), extra=dict(extra or {}),
        )
        # Scales come from the train split only, so eval data never informs preprocessing.
        meta.norm_scale, meta.target_norm_scale = estimate_norm_scales(ActivationStore(self.path, meta))
        atomic_write_bytes(self.path / "meta.json", json.dumps(meta.to_json(), indent=1).encode())
        self._progress_path.unlink(missing_ok=True)
        return ActivationStore(self.path)


def _content_hash(path: Path, shards: list[ShardInfo], n: int, o: int, dtype: str) -> str:
    hx, hy = hashlib.sha256(), hashlib.sha256()
    for s in shards:
        hx.update(np.ascontiguousarray(np.load(path / s.x, mmap_mode="r")).tobytes())
        if s.y is not None:
            hy.update(np.ascontiguousarray(np.load(path / s.y, mmap_mode="r")).tobytes())
    head = json.dumps({"n": n, "o": o, "dtype": dtype, "format": FORMAT_VERSION}).encode()
    return hashlib.sha256(head + hx.digest() + hy.digest()).hexdigest()


def estimate_norm_scales(store: ActivationStore, sample_rows: int = _NORM_SAMPLE_ROWS) -> tuple[float, float]:
    """Scalars (c_x, c_y) with mean ||c x||_2 = sqrt(n) (and likewise for y) on the train split.

    Seeds 004 and 000: "The dataset is scaled by a single constant such that E[||x||_2] = sqrt(n)".
    The estimate uses up to `sample_rows` rows evenly strided over the train split.
    """
    lo, hi = store.train_range
    step = max(1, (hi - lo) // sample_rows)
    x, y = store.read(lo, hi) if step == 1 else _strided(store, lo, hi, step)
    if not np.isfinite(x).all() or (y is not None and not np.isfinite(y).all()):
        raise UserError(f"activation store {store.path} contains non-finite values")

    def scale(a: np.ndarray, dim: int) -> float:
        mean_norm = float(np.linalg.norm(a.astype(np.float64), axis=1).mean())
        if mean_norm <= 0:
            raise UserError(f"activation store {store.path}: all sampled rows are zero")
        return float(np.sqrt(dim) / mean_norm)

    cx = scale(x, store.n)
    cy = scale(y, store.o) if y is not None else cx
    return cx, cy


def _strided(store: ActivationStore, lo: int, hi: int, step: int) -> tuple[np.ndarray, np.ndarray | None]:
    xs, ys = [], []
    chunk = step * 4096
    for a in range(lo, hi, chunk):
        x, y = store.read(a, min(hi, a + chunk))
        xs.append(x[::step])
        if y is not None:
            ys.append(y[::step])
    return np.concatenate(xs), (np.concatenate(ys) if ys else None)
