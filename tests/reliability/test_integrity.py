"""The results directory under faults: corrupt run files, a torn results.parquet, a full disk, two
drivers, failing tasks and a store with NaN rows. Each ends in one line and a documented exit code,
and the table then holds every run exactly once with the right status and no temp file."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sae_core.errors import StorageError, UserError
from sweeps import run_sweep
from sweeps.data import resolve_data
from sweeps.results import ResultsDir
from sweeps.spec import load_spec
from tests.reliability.conftest import assert_each_run_once, cli, table, temp_files, write_spec

SMALL = {"design": {"kind": "grid", "features": [32, 64], "steps": [20]}, "lr": [1e-3, 3e-3]}  # 4 runs, 2 packs
_FINISHED: dict[str, Path] = {}


@pytest.fixture
def finished(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, tiny_spec, local_ray) -> tuple[Path, Path]:
    """(spec path, a copy of a finished 4-run sweep's results dir); the sweep runs once per module."""
    if "results" not in _FINISHED:
        home = tmp_path_factory.mktemp("finished")
        spec = write_spec(home / "spec.yaml", tiny_spec(name="small", **SMALL))
        run_sweep(spec, home / "results", progress=False)
        _FINISHED.update(spec=spec, results=home / "results")
    results = tmp_path / "results"
    shutil.copytree(_FINISHED["results"], results)
    return _FINISHED["spec"], results


def _row(run_id: str) -> dict:
    return {"run_id": run_id, "status": "ok", "attempt": 1, "cell_id": "c", "flops": 1.0, "optuna_trial": -1,
            "loss": 0.5}


CORRUPTIONS = {
    "truncated": lambda f: f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]),
    "zero_bytes": lambda f: f.write_bytes(b""),
    "garbage": lambda f: f.write_bytes(os.urandom(500)),
    "wrong_columns": lambda f: pq.write_table(pa.table({"run_id": [f.stem], "colour": ["blue"]}), f),
    "two_rows": lambda f: pq.write_table(pa.Table.from_pylist([_row(f.stem), _row(f.stem)]), f),
    "null_status": lambda f: pq.write_table(pa.Table.from_pylist([{**_row(f.stem), "status": None}]), f),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_run_file_is_quarantined(tmp_path: Path, kind: str) -> None:
    warnings: list[str] = []
    results = ResultsDir(tmp_path / "r", warn=warnings.append)
    results.write_rows([_row("a"), _row("b")])
    CORRUPTIONS[kind](results.runs_dir / "b.parquet")
    assert set(results.records()) == {"a"}
    assert len(warnings) == 1 and "b.parquet" in warnings[0] and "moved to" in warnings[0] and "\n" not in warnings[0]
    assert [p.name.split(".parquet")[0] for p in results.corrupt_dir.iterdir()] == ["b"]
    assert list(results.compact()["run_id"]) == ["a"] and temp_files(tmp_path) == []


def test_corrupt_run_file_then_status_and_rerun(finished, capsys) -> None:
    spec, results = finished
    victim = sorted((results / "runs").glob("*.parquet"))[1]
    victim.write_bytes(victim.read_bytes()[:100])   # torn, as by a power loss before the fsync
    assert cli("sweep", "status", str(results)) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and victim.name in err[0] and "corrupt" in err[0]
    assert len(table(results)) == 3
    summary = run_sweep(spec, results, progress=False)
    assert summary.trained == 1 and summary.skipped == 3
    df = assert_each_run_once(results, 4)
    assert victim.stem in set(df["run_id"])


def test_torn_results_parquet_is_rebuilt(finished, capsys) -> None:
    spec, results = finished
    before = table(results).sort_values("run_id").reset_index(drop=True)
    compact = results / "results.parquet"
    compact.write_bytes(compact.read_bytes()[: compact.stat().st_size // 3])
    assert cli("sweep", "status", str(results)) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.parquet is unreadable" in err[0] and "rebuilding" in err[0]
    after = assert_each_run_once(results, 4).sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(after[before.columns], before, check_dtype=False)
    assert run_sweep(spec, results, progress=False).trained == 0


def test_disk_full_is_one_line_then_rerun_completes(finished, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import sae_core.files

    spec, results = finished
    dropped = sorted((results / "runs").glob("*.parquet"))[:2]
    for f in dropped:
        f.unlink()
    real_replace = os.replace

    def full(src: object, dst: object) -> None:
        if Path(dst).parent.name == "runs":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(sae_core.files.os, "replace", full)
    code = cli("sweep", "run", str(spec), "--results", str(results), "--no-progress")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 74 and err[-1].startswith("error: cannot write ") and "runs/" in err[-1]
    assert err[-1].endswith("No space left on device") and not any("Traceback" in line for line in err)
    assert temp_files(results) == []
    monkeypatch.setattr(sae_core.files.os, "replace", real_replace)   # space is back
    assert run_sweep(spec, results, progress=False).trained == 2
    assert_each_run_once(results, 4)


def test_atomic_write_failure_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sae_core.files

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sae_core.files.os, "fsync", no_space)
    results = ResultsDir(tmp_path / "r")
    with pytest.raises(StorageError, match=r"^cannot write .*runs/a\.parquet: No space left on device$"):
        results.write_row(_row("a"))
    assert list(results.runs_dir.iterdir()) == []


def test_second_driver_is_refused(finished, capsys) -> None:
    spec, results = finished
    manifest = (results / "manifest.json").read_bytes()
    with ResultsDir(results).lock():
        code = cli("sweep", "run", str(spec), "--results", str(results))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "in use by another sweep driver (pid" in err[0]
    assert (results / "manifest.json").read_bytes() == manifest
    assert_each_run_once(results, 4)


def test_user_error_in_task_is_not_retried() -> None:
    import sweeps.executor as executor

    def bad(task: object) -> list:
        raise UserError("activation store /x: unreadable shard")

    original = executor._train_pack
    executor._train_pack = bad
    try:
        result = executor.train_pack_task(None)  # type: ignore[arg-type]
    finally:
        executor._train_pack = original
    # A returned value, not a raised exception: Ray has nothing to retry.
    assert result == executor.TaskUserError("activation store /x: unreadable shard")


def test_failed_runs_exit_3_with_their_count(tmp_path: Path, tiny_spec, local_ray, capsys,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from sae_core.store import ActivationStore

    monkeypatch.setattr(ActivationStore, "verify", lambda self: None)  # let the broken shard reach the task
    store = tmp_path / "store"
    shutil.copytree(resolve_data(load_spec(tiny_spec()))[0].path, store)
    (store / "x_00000.npy").write_bytes(b"broken")
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec(
        activations={"source": "store", "path": str(store)}, design={"kind": "grid", "features": [32], "steps": [20]},
        retries=2))
    results = tmp_path / "r"
    code = cli("sweep", "run", str(spec), "--results", str(results), "--no-progress")
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 3 and err[-1].startswith("error: 2 of 2 runs failed"), err
    assert "Traceback" not in captured.out + captured.err
    df = assert_each_run_once(results, 2, status="failed")
    assert (df["attempt"] == 1).all() and df["error"].str.startswith("UserError: unreadable shard").all()


@pytest.mark.parametrize("split", ["train", "eval"])
def test_store_with_nan_rows_is_refused_before_ray(tmp_path: Path, tiny_spec, capsys,
                                                   monkeypatch: pytest.MonkeyPatch, split: str) -> None:
    import ray

    source = resolve_data(load_spec(tiny_spec()))[0]
    store = tmp_path / "store"
    shutil.copytree(source.path, store)
    row = 5 if split == "train" else source.count - 3
    x = np.load(store / "x_00000.npy", mmap_mode="r+")
    x[row, 2] = np.nan
    x.flush()
    del x
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec(activations={"source": "store", "path": str(store)}))
    results = tmp_path / "r"
    code = cli("sweep", "run", str(spec), "--results", str(results))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"the {split} split, first at row {row}" in err[0], err
    assert not results.exists()


def test_compaction_reads_only_changed_run_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recording a pack and compacting cost O(pack), not O(all runs): results.parquet indexes its files."""
    import sweeps.results

    results = ResultsDir(tmp_path / "r")
    results.write_rows([_row(f"r{i:03d}") for i in range(200)])
    assert len(results.compact()) == 200
    reads: list[Path] = []
    real = sweeps.results.read_run_file
    monkeypatch.setattr(sweeps.results, "read_run_file", lambda f: (reads.append(f), real(f))[1])

    again = ResultsDir(tmp_path / "r")   # a new driver: the index comes from results.parquet
    again.write_rows([{**_row("r007"), "status": "failed"}, _row("new")])
    df = again.compact()
    assert sorted(f.stem for f in reads) == ["new", "r007"]
    assert len(df) == 201 and df.set_index("run_id").loc["r007", "status"] == "failed"
    assert len(pq.read_table(tmp_path / "r" / "results.parquet")) == 201
