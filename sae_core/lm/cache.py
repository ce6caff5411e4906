"""Cache a real model's activations over real text into an ActivationStore (resumable).

Rows are written in window order, position order; the store's eval split is its tail, so eval
rows come from text windows the training rows never saw. Those eval windows' tokens are saved
beside the shards (EVAL_WINDOWS_FILE) for the downstream metrics. Every flushed shard records
the window index reached, so an interrupted cache continues there and ends with the same
content hash as an uninterrupted one (same batch size and device: float results can depend on
batch shapes).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from sae_core.lm.models import LanguageModel, Site, check_model_name, load_model
from sae_core.lm.text import TextSource, iter_documents, resolve_sources
from sae_core.lm.windows import SKIPPED, WindowPlan, plan_windows
from sae_core.store import ActivationStore, StoreWriter, default_eval_rows
from sae_core.errors import UserError

EVAL_WINDOWS_FILE = "lm_eval_windows.npz"
LOCK_FILE = ".lock"
MAX_EVAL_WINDOWS = 64
LAYER_CONVENTION = "layer L (1-based) = the L-th transformer block; resid = its output (hidden_states[L])"
DTYPES = ("float32", "float16")
_STORE_FILE_PREFIXES = ("x_", "y_", "meta.json", "progress.json", "ground_truth", EVAL_WINDOWS_FILE)
_SHARD_BYTES = 1 << 27  # ~128 MiB per shard


def cache_activations(
    model: str | LanguageModel,
    layer: int,
    site: str,
    text: Sequence[str],
    tokens: int,
    out: str | os.PathLike[str],
    *,
    seq_len: int = 128,
    batch_size: int = 32,
    device: str = "cpu",
    dtype: str = "float32",
    overwrite: bool = False,
    progress: bool = True,
    shard_rows: int | None = None,
) -> ActivationStore:
    """Cache exactly `tokens` activation rows of `model` at (`layer`, `site`) over `text` into `out`.

    `model` is a registry name (`minilm`, `smollm2`, `hf:<name>`) or an already loaded
    LanguageModel (then `device` is ignored). `dtype` is the storage dtype; models compute in
    float32. An unfinished store at `out` from the same job is resumed; `overwrite` replaces a
    finished or different one. Returns the finished store.
    """
    out = Path(out)
    if isinstance(model, str):
        check_model_name(model)
    if tokens < 2:
        raise UserError(f"--tokens must be at least 2 (a store holds train and eval rows), got {tokens}")
    if batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {batch_size}")
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    _check_out(out, overwrite)
    sources = resolve_sources(text)
    lm = load_model(model, device) if isinstance(model, str) else model
    points = lm.site(layer, site)
    plan = plan_windows(lm, iter_documents(sources), seq_len, tokens)
    source = _source_meta(lm, points, sources, seq_len, tokens)
    job = _job_id(source, plan, dtype)
    with _exclusive(out):
        if overwrite:
            _clear_store(out)
        rows_per_shard = shard_rows or max(4096, _SHARD_BYTES // (np.dtype(dtype).itemsize * (points.n + points.o)))
        writer = StoreWriter(out, points.n, points.o, dtype=dtype, shard_rows=rows_per_shard, source=source,
                             has_targets=points.has_targets)
        start, done = _resume_point(writer, job, out)
        t0 = time.perf_counter()
        _run(lm, points, plan, writer, job, start, done, tokens, batch_size, progress)
        wall = time.perf_counter() - t0
        eval_rows = default_eval_rows(tokens)
        eval_idx = _save_eval_windows(out, plan, tokens - eval_rows)
        return writer.close(eval_rows=eval_rows, extra=_extra(plan, eval_idx, batch_size, lm, done, wall, tokens))


def _extra(plan: WindowPlan, eval_idx: np.ndarray, batch_size: int, lm: LanguageModel, done: int, wall: float,
           tokens: int) -> dict[str, Any]:
    """meta.json `extra`: the window plan's identity, the held-out windows, and this run's speed."""
    return {
        "layer_convention": LAYER_CONVENTION,
        "windows": plan.windows,
        "documents": plan.documents,
        "plan_sha256": plan.digest(),
        "eval_windows_file": EVAL_WINDOWS_FILE,
        "eval_windows": len(eval_idx),
        "batch_size": batch_size,
        "device": str(lm.device),
        "resumed_from_row": done,
        "wall_s": round(wall, 3),
        "tokens_per_s": round((tokens - done) / wall, 1) if wall > 0 else None,
    }


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on `out` so two processes never write one store."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"--out {out}: another process is caching into this folder") from None
        try:
            yield
        finally:
            (out / LOCK_FILE).unlink(missing_ok=True)
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, a non-store folder, or a finished store without overwrite."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if out.is_dir():
        if (out / "meta.json").exists() and not overwrite:
            raise UserError(f"--out {out}: already holds an activation store; pass --overwrite to replace it")
        is_store = (out / "meta.json").exists() or (out / "progress.json").exists()
        if not is_store and any(f.name != LOCK_FILE for f in out.iterdir()):
            raise UserError(f"--out {out}: folder is not empty and holds no activation store")
    parent = out if out.is_dir() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise UserError(f"--out {out}: {parent} is not writable")


def _clear_store(out: Path) -> None:
    """Remove a previous store's files (only those) from `out`."""
    if not out.is_dir():
        return
    for f in out.iterdir():
        if f.is_file() and f.name.lstrip(".").startswith(_STORE_FILE_PREFIXES):
            f.unlink()


def _source_meta(lm: LanguageModel, points: Site, sources: list[TextSource], seq_len: int,
                 tokens: int) -> dict[str, Any]:
    meta = {
        "kind": "lm", "model": lm.name, "model_ref": lm.ref, "model_kind": lm.kind,
        "layer": points.layer, "site": points.name, "hook_name": points.hook_name, "hook_module": points.module_path,
        "text": [s.describe() for s in sources], "seq_len": seq_len, "tokens": tokens, "skipped": SKIPPED,
    }
    if points.hook_name_out:
        meta["hook_name_out"] = points.hook_name_out
    return meta


def _job_id(source: dict[str, Any], plan: WindowPlan, dtype: str) -> str:
    spec = {k: source[k] for k in ("model", "model_ref", "layer", "site", "seq_len", "tokens")}
    spec.update(dtype=dtype, plan=plan.digest())
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _resume_point(writer: StoreWriter, job: str, out: Path) -> tuple[int, int]:
    """(window index, rows done) to continue from: (0, 0) for a fresh store."""
    state = writer.resume_state
    if state is None:
        return 0, 0
    if not isinstance(state, dict) or state.get("job") != job:
        raise UserError(f"--out {out}: holds an unfinished cache of a different job (model, layer, site, "
                        f"text, seq-len, tokens or dtype differ); pass --overwrite to start again")
    if state["rows"] != writer.rows:
        raise UserError(f"--out {out}: progress.json records {state['rows']} rows but its shards hold {writer.rows}")
    return int(state["windows"]), int(state["rows"])


def _run(lm: LanguageModel, points: Site, plan: WindowPlan, writer: StoreWriter, job: str, start: int, done: int,
         tokens: int, batch_size: int, progress: bool) -> None:
    import torch
    from tqdm import tqdm

    from sae_core.lm.hooks import capture

    bar = tqdm(total=tokens, initial=done, unit="tok", unit_scale=True, file=sys.stderr, disable=not progress,
               desc=f"{lm.name} L{points.layer} {points.name}", smoothing=0.05, dynamic_ncols=True)
    with bar:
        for lo in range(start, plan.windows, batch_size):
            hi = min(lo + batch_size, plan.windows)
            ids = torch.from_numpy(plan.input_ids[lo:hi]).to(lm.device, torch.long)
            mask = torch.from_numpy(plan.attention_mask[lo:hi]).to(lm.device)
            keep = torch.from_numpy(plan.keep[lo:hi]).to(lm.device)
            x, y = capture(lm, points, ids, mask)
            take = min(int(keep.sum()), tokens - done)
            xs = x[keep][:take].float().cpu().numpy()
            ys = y[keep][:take].float().cpu().numpy() if y is not None else None
            done += take
            writer.append(xs, ys, state={"job": job, "windows": hi, "rows": done})
            bar.update(take)


def _save_eval_windows(out: Path, plan: WindowPlan, train_rows: int) -> np.ndarray:
    """Save (up to MAX_EVAL_WINDOWS of) the windows whose rows all lie in the eval split."""
    starts = plan.row_offsets[:-1]
    idx = np.flatnonzero(starts >= train_rows)[:MAX_EVAL_WINDOWS]
    sub = plan.subset(idx)
    tmp = out / f".{EVAL_WINDOWS_FILE}.tmp{os.getpid()}.npz"
    np.savez(tmp, input_ids=sub.input_ids, attention_mask=sub.attention_mask, keep=sub.keep, index=idx)
    os.replace(tmp, out / EVAL_WINDOWS_FILE)
    return idx
