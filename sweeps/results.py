"""The results directory (DESIGN section 6): one parquet file per run, compacted into a table.

Layout of `results/<sweep>/`::

    spec.yaml         the spec as given (latest invocation)
    manifest.json     spec hash, plan summary, versions, timestamps
    runs/<run_id>.parquet   one row per run, written atomically by the driver as results arrive
    results.parquet   compaction of runs/ (rebuilt at the end of each sweep and by `sweep status`)
    checkpoints/      per-run training checkpoints (resume of interrupted packs)
    optuna.db         Optuna studies (LR search), unless the spec names another storage
    replaced/<stamp>/ what `--force` moved aside (an older spec's files)

A run_id has at most one file, replaced atomically, so no row is ever duplicated.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sae_core.errors import UserError
from sae_core.files import atomic_write_text

LOCK_NAME = ".lock"
FINAL = ("ok", "diverged")  # statuses that are never re-run
SORT_COLUMNS = ("m", "steps", "lambda", "seed", "lr", "run_id")


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds (row timestamps, manifest)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


@dataclass(frozen=True)
class RunRecord:
    """What the driver needs to know about a run already on disk."""

    status: str
    attempt: int
    cell_id: str
    flops: float
    optuna_trial: int
    loss: float


class ResultsDir:
    """Paths and atomic reads/writes of one sweep's results directory."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.runs_dir = self.path / "runs"
        self.spec_path = self.path / "spec.yaml"
        self.manifest_path = self.path / "manifest.json"
        self.table_path = self.path / "results.parquet"
        self.checkpoints_dir = self.path / "checkpoints"
        self.optuna_db = self.path / "optuna.db"

    # -- ownership --------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive use by one driver (an flock, released even if the driver is SIGKILLed)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_NAME, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                raise UserError(f"--results {self.path} is in use by another sweep driver "
                                f"({fh.read().strip() or 'unknown process'})") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
            fh.flush()
            yield

    def manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when the directory holds no sweep yet."""
        if not self.manifest_path.is_file():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{self.manifest_path}: unreadable manifest ({exc})") from None

    def claim(self, spec_hash: str, sweep: str, force: bool) -> Path | None:
        """Make this directory the home of spec `spec_hash`; with force, move an older spec aside.

        Returns the directory the old files were moved to (None if nothing was moved). A
        directory with other content and no manifest is refused even with force.
        """
        old = self.manifest()
        if old is None:
            if self.path.exists() and any(p.name not in ("checkpoints", LOCK_NAME) for p in self.path.iterdir()):
                raise UserError(f"--results {self.path}: directory exists, is not empty and has no manifest.json; "
                                "choose another results directory")
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
        dest = self.path / "replaced" / f"{stamp}-{old.get('spec_hash', 'unknown')}"
        dest.mkdir(parents=True)
        for p in (self.spec_path, self.manifest_path, self.runs_dir, self.table_path, self.optuna_db):
            if p.exists():
                shutil.move(str(p), str(dest / p.name))
        return dest

    def adopt(self, archive: Path, wanted: dict[str, dict[str, Any]]) -> int:
        """Copy finished rows of `wanted` run_ids from an archive, updating their plan columns.

        Identical run_ids mean identical config and data, so these results are valid for the new
        spec; only the plan-derived columns (sweep, budget, cell_id) are rewritten.
        """
        runs = archive / "runs"
        adopted = 0
        for run_id, columns in wanted.items():
            file = runs / f"{run_id}.parquet"
            if not file.is_file():
                continue
            row = pq.read_table(file).to_pylist()[0]
            if row.get("status") not in FINAL:
                continue
            row.update(columns)
            self.write_row(row)
            adopted += 1
        return adopted

    def write_spec(self, text: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.spec_path, text)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1, sort_keys=True, default=str))

    # -- rows -------------------------------------------------------------------------------
    def write_row(self, row: dict[str, Any]) -> None:
        """Write (or atomically replace) the one file of row['run_id']."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        path = self.runs_dir / f"{row['run_id']}.parquet"
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        pq.write_table(pa.Table.from_pylist([row]), tmp)
        os.replace(tmp, path)

    def checkpointed(self) -> set[str]:
        """run_ids with a checkpoint file: in flight, or interrupted and resumable."""
        return {p.stem for p in self.checkpoints_dir.glob("*.pt")} if self.checkpoints_dir.is_dir() else set()

    def run_files(self) -> list[Path]:
        return sorted(self.runs_dir.glob("*.parquet")) if self.runs_dir.is_dir() else []

    def records(self) -> dict[str, RunRecord]:
        """run_id -> status, attempt, cell, flops, trial and loss of every run file."""
        out = {}
        for file in self.run_files():
            d = pq.read_table(file).to_pylist()[0]
            loss = d.get("loss")
            out[file.stem] = RunRecord(d["status"], int(d["attempt"]), d["cell_id"], float(d["flops"]),
                                       int(d["optuna_trial"]), math.nan if loss is None else float(loss))
        return out

    def table(self) -> pd.DataFrame:
        """All run files as one DataFrame (columns unioned; sorted by config)."""
        files = self.run_files()
        if not files:
            return pd.DataFrame()
        tables = [pq.read_table(f) for f in files]
        df = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        keys = [c for c in SORT_COLUMNS if c in df.columns]
        return df.sort_values(keys, kind="stable").reset_index(drop=True)

    def compact(self) -> pd.DataFrame:
        """Rebuild results.parquet from runs/ (atomic replace) and return the table."""
        df = self.table()
        if df.empty:
            return df
        tmp = self.table_path.with_name(f".{self.table_path.name}.tmp{os.getpid()}")
        df.to_parquet(tmp, index=False)
        os.replace(tmp, self.table_path)
        return df


def pending_attempt(record: RunRecord | None, retries: int) -> int | None:
    """Attempt number to run now, or None if the run is final (ok, diverged, or out of retries)."""
    if record is None:
        return 1
    if record.status in FINAL or record.attempt > retries:
        return None
    return record.attempt + 1

