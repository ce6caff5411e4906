"""The results directory (DESIGN section 6): one parquet file per run, compacted into a table.

Layout of `results/<sweep>/`::

    spec.yaml         the spec as given (latest invocation)
    manifest.json     spec hash, plan summary, versions, timestamps
    runs/<run_id>.parquet   one row per run, written atomically by the driver as results arrive
    results.parquet   the compacted table; its parquet metadata indexes the run files it holds
    checkpoints/      per-run training checkpoints (resume of interrupted packs)
    optuna.db         Optuna studies (LR search), unless the spec names another storage
    corrupt/          run files that failed verification (moved aside; their runs are retrained)
    replaced/<stamp>/ what `--force` moved aside (an older spec's files)

Integrity: every write goes through `sae_core.files.atomic_path` (temp file, fsync of file and
directory, rename), and every read is verified: a run file that is torn, empty, garbage or lacks
the identity columns is moved to `corrupt/` with a one-line warning, so its run counts as never
run and is trained again; a torn `results.parquet` is rebuilt from `runs/`. Compaction is
incremental: results.parquet records each run file's signature (inode, size, mtime), and only run
files whose signature changed are read again, so recording and compacting n runs is O(n).

A run_id has at most one file, replaced atomically, so no row is ever duplicated.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sae_core.errors import UserError
from sae_core.files import (atomic_path, atomic_write_text, ensure_dir, fsync_dir, is_temp_name, remove_temp_files,
                            storage_errors)

LOCK_NAME = ".lock"
FINAL = ("ok", "diverged")  # statuses that are never re-run
SORT_COLUMNS = ("m", "steps", "lambda", "seed", "lr", "run_id")
# Columns every run file must have (non-null) to count as a run; anything less is quarantined.
REQUIRED = {"run_id": str, "status": str, "attempt": int, "cell_id": str, "flops": float, "optuna_trial": int}
INDEX_KEY = b"saescale.run_files"   # results.parquet metadata: run_id -> signature of its run file
Signature = tuple[int, int, int]     # (inode, size, mtime_ns) of a run file


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds (row timestamps, manifest)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


Log = Callable[[str], None]   # where the driver's one-line messages go


def stderr_log(message: str) -> None:
    """The default Log: one line on stderr, flushed."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RunRecord:
    """What the driver needs to know about a run already on disk."""

    status: str
    attempt: int
    cell_id: str
    flops: float
    optuna_trial: int
    loss: float


def read_run_file(path: Path) -> tuple[pa.Table | None, str]:
    """A run file's one-row table, or (None, why it is not a valid run file)."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        return None, f"unreadable parquet ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    if table.num_rows != 1:
        return None, f"{table.num_rows} rows, expected 1"
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        return None, f"missing column(s) {', '.join(missing)}"
    row = table.select(list(REQUIRED)).to_pylist()[0]
    for column, kind in REQUIRED.items():
        value = row[column]
        if value is None or (kind is not str and (isinstance(value, (bool, str)) or not isinstance(value, (int, float)))) \
                or (kind is str and not isinstance(value, str)):
            return None, f"column {column} is {value!r}, expected a {kind.__name__}"
    if row["run_id"] != path.stem:
        return None, f"run_id {row['run_id']!r} does not match the file name"
    return table, ""


class ResultsDir:
    """Paths and verified, atomic reads/writes of one sweep's results directory."""

    def __init__(self, path: str | os.PathLike[str], warn: Log = stderr_log):
        self.path = Path(path)
        self.runs_dir = self.path / "runs"
        self.spec_path = self.path / "spec.yaml"
        self.manifest_path = self.path / "manifest.json"
        self.table_path = self.path / "results.parquet"
        self.checkpoints_dir = self.path / "checkpoints"
        self.corrupt_dir = self.path / "corrupt"
        self.optuna_db = self.path / "optuna.db"
        self.warn = warn
        self._index: tuple[pa.Table, dict[str, Signature]] | None = None  # rows and the files they came from
        self._on_disk: dict[str, Signature] | None = None                  # what results.parquet indexes

    # -- ownership --------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive use by one driver (an flock, released even if the driver is SIGKILLed)."""
        ensure_dir(self.path)
        with storage_errors(self.path / LOCK_NAME):
            fh = open(self.path / LOCK_NAME, "a+")
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                raise UserError(f"--results {self.path} is in use by another sweep driver "
                                f"({fh.read().strip() or 'unknown process'})") from None
            with storage_errors(self.path / LOCK_NAME):
                fh.seek(0)
                fh.truncate()
                fh.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
                fh.flush()
            yield

    def remove_temp_files(self) -> int:
        """Delete temp files killed writers left in this directory (call holding the lock, no writer running)."""
        return sum(len(remove_temp_files(d)) for d in (self.path, self.runs_dir, self.checkpoints_dir))

    def manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when the directory holds no sweep yet."""
        if not self.manifest_path.is_file():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{self.manifest_path}: unreadable manifest ({exc})") from None

    def claim(self, spec_hash: str, sweep: str, force: bool) -> Path | None:
        """Make this directory the home of spec `spec_hash`; with force, move an older spec aside.

        Returns the directory the old files were moved to (None if nothing was moved). A
        directory with other content and no manifest (checkpoints included: they are only ever
        loaded from a sweep's own directory) is refused even with force.
        """
        old = self.manifest()
        if old is None:
            if self.path.exists() and any(p.name != LOCK_NAME and not _empty_dir(p) for p in self.path.iterdir()):
                raise UserError(f"--results {self.path}: directory exists, is not empty and has no manifest.json "
                                "(files, or checkpoints/ that no sweep here wrote); choose another results directory")
            return None
        if old.get("spec_hash") == spec_hash:
            return None
        if not force:
            raise UserError(
                f"--results {self.path} holds sweep {old.get('sweep')!r} with spec hash {old.get('spec_hash')}, "
                f"but this spec ({sweep!r}) hashes to {spec_hash}; use another --results directory, or --force "
                "to move the old results to replaced/ and start this spec there")
        return self._move_aside(old)

    def _move_aside(self, old: dict[str, Any]) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = ensure_dir(self.path / "replaced" / f"{stamp}-{old.get('spec_hash', 'unknown')}")
        with storage_errors(dest):
            for p in (self.spec_path, self.manifest_path, self.runs_dir, self.table_path, self.optuna_db):
                if p.exists():
                    shutil.move(str(p), str(dest / p.name))
        self._index = self._on_disk = None
        return dest

    def adopt(self, archive: Path, wanted: dict[str, dict[str, Any]]) -> int:
        """Copy finished rows of `wanted` run_ids from an archive, updating their plan columns.

        Identical run_ids mean identical config and data, so these results are valid for the new
        spec; only the plan-derived columns (sweep, budget, cell_id) are rewritten. Invalid
        archived files are skipped (their runs are simply trained again).
        """
        rows = []
        for run_id, columns in wanted.items():
            file = archive / "runs" / f"{run_id}.parquet"
            if not file.is_file():
                continue
            table, _ = read_run_file(file)
            if table is None:
                continue
            row = table.to_pylist()[0]
            if row.get("status") in FINAL:
                rows.append({**row, **columns})
        self.write_rows(rows)
        return len(rows)

    def write_spec(self, text: str) -> None:
        ensure_dir(self.path)
        atomic_write_text(self.spec_path, text)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        ensure_dir(self.path)
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1, sort_keys=True, default=str))

    # -- rows -------------------------------------------------------------------------------
    def write_row(self, row: dict[str, Any]) -> None:
        """Write (or atomically replace) the one file of row['run_id']."""
        self.write_rows([row])

    def write_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Write (or atomically replace) each row's file; one directory fsync for the batch."""
        rows = list(rows)
        if not rows:
            return
        ensure_dir(self.runs_dir)
        for row in rows:
            with atomic_path(self.runs_dir / f"{row['run_id']}.parquet", sync_dir=False) as tmp:
                pq.write_table(pa.Table.from_pylist([row]), tmp)
        with storage_errors(self.runs_dir):
            fsync_dir(self.runs_dir)

    def checkpointed(self) -> set[str]:
        """run_ids with a checkpoint file: in flight, or interrupted and resumable."""
        return {p.stem for p in self.checkpoints_dir.glob("*.pt")} if self.checkpoints_dir.is_dir() else set()

    def run_files(self) -> list[Path]:
        return sorted(self.runs_dir / f"{run_id}.parquet" for run_id in self._signatures())

    def _signatures(self) -> dict[str, Signature]:
        """run_id -> signature of every run file in runs/ (temp files excluded)."""
        if not self.runs_dir.is_dir():
            return {}
        out = {}
        for entry in os.scandir(self.runs_dir):
            if entry.name.endswith(".parquet") and not is_temp_name(entry.name):
                st = entry.stat(follow_symlinks=False)
                out[entry.name[:-len(".parquet")]] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return out

    def _quarantine(self, file: Path, why: str) -> None:
        """Move an invalid run file to corrupt/ (its run will be retrained) and say so on one line."""
        ensure_dir(self.corrupt_dir)
        dest = self.corrupt_dir / f"{file.name}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        with storage_errors(dest):
            os.replace(file, dest)
        self.warn(f"warning: {file}: {why}; moved to {dest}, the run will be trained again")

    def _read_table_file(self) -> tuple[pa.Table, dict[str, Signature]] | None:
        """results.parquet and its run-file index, or None if absent, torn or written without an index."""
        if not self.table_path.is_file():
            return None
        try:
            table = pq.read_table(self.table_path)
            raw = (table.schema.metadata or {}).get(INDEX_KEY)
            if raw is None:   # written by an older version or another tool: rebuild silently
                return None
            index = json.loads(raw)
        except (pa.ArrowException, OSError, ValueError) as exc:
            self.warn(f"warning: {self.table_path} is unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                      "rebuilding it from runs/")
            return None
        return table.replace_schema_metadata(None), {k: tuple(v) for k, v in index.items()}

    def _arrow(self) -> pa.Table | None:
        """All valid run files as one arrow table: the indexed rows whose file is unchanged plus the
        files that are new or changed (verified; invalid ones quarantined). None when there are none."""
        current = self._signatures()
        if self._index is None:
            loaded = self._read_table_file()
            self._on_disk = None if loaded is None else loaded[1]
            self._index = loaded or (pa.table({"run_id": pa.array([], pa.string())}), {})
        base, indexed = self._index
        kept = [run_id for run_id, sig in indexed.items() if current.get(run_id) == sig]
        parts = [base.filter(pc.is_in(base["run_id"], pa.array(kept, pa.string())))] if kept else []
        signatures = {run_id: indexed[run_id] for run_id in kept}
        for run_id in sorted(set(current) - set(kept)):
            file = self.runs_dir / f"{run_id}.parquet"
            table, why = read_run_file(file)
            if table is None:
                self._quarantine(file, why)
                continue
            parts.append(table)
            signatures[run_id] = current[run_id]
        if not parts:
            self._index = (pa.table({"run_id": pa.array([], pa.string())}), {})
            return None
        merged = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
        self._index = (merged, signatures)
        return merged

    def records(self) -> dict[str, RunRecord]:
        """run_id -> status, attempt, cell, flops, trial and loss of every valid run file."""
        merged = self._arrow()
        if merged is None:
            return {}
        columns = list(REQUIRED) + (["loss"] if "loss" in merged.column_names else [])
        out = {}
        for d in merged.select(columns).to_pylist():
            loss = d.get("loss")
            out[d["run_id"]] = RunRecord(d["status"], int(d["attempt"]), d["cell_id"], float(d["flops"]),
                                         int(d["optuna_trial"]), math.nan if loss is None else float(loss))
        return out

    def table(self) -> pd.DataFrame:
        """All valid run files as one DataFrame (columns unioned; sorted by config)."""
        merged = self._arrow()
        if merged is None:
            return pd.DataFrame()
        df = merged.to_pandas()
        keys = [c for c in SORT_COLUMNS if c in df.columns]
        return df.sort_values(keys, kind="stable").reset_index(drop=True)

    def compact(self) -> pd.DataFrame:
        """Bring results.parquet up to date with runs/ (atomic replace, only if it changed); return the table."""
        df = self.table()
        if df.empty:
            return df
        assert self._index is not None
        signatures = self._index[1]
        if signatures != self._on_disk:
            table = pa.Table.from_pandas(df, preserve_index=False)
            meta = {**(table.schema.metadata or {}), INDEX_KEY: json.dumps(signatures).encode()}
            with atomic_path(self.table_path) as tmp:
                pq.write_table(table.replace_schema_metadata(meta), tmp)
            self._on_disk = dict(signatures)
        return df


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def pending_attempt(record: RunRecord | None, retries: int) -> int | None:
    """Attempt number to run now, or None if the run is final (ok, diverged, or out of retries)."""
    if record is None:
        return 1
    if record.status in FINAL or record.attempt > retries:
        return None
    return record.attempt + 1
