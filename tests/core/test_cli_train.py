"""`saescale train` end to end: JSON output, one-line errors for bad input, crash and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from saescale.cli import main

from .helpers import write_store

REQUIRED = ["recipe", "n", "m", "steps", "batch_size", "tokens", "flops", "flops_convention", "loss", "mse", "nmse",
            "fvu", "l0", "l1", "dead_frac", "wall_s", "status", "mmcs"]
SYN = ["--n", "16", "--m-true", "32", "--tokens", "20000"]


def _run(capsys, args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_train_json_has_the_documented_keys(capsys):
    code, out, _ = _run(capsys, ["train", "--recipe", "anthropic-2024-04", "--m", "32", "--steps", "20",
                                 "--batch-size", "128", "--lr", "1e-3", "--json", *SYN])
    assert code == 0
    row = json.loads(out)
    for key in REQUIRED:
        assert key in row, key
    assert row["tokens"] == 20 * 128 and row["flops"] == 10 * 16 * 32 * 20 * 128 and row["status"] == "ok"


@pytest.fixture
def nan_store(tmp_path):
    x = np.random.default_rng(0).normal(size=(4000, 8)).astype(np.float32)
    store = write_store(tmp_path / "nan", x)
    arr = np.load(tmp_path / "nan" / store.meta.shards[0].x, mmap_mode="r+")
    arr[5] = np.nan
    arr.flush()
    return str(tmp_path / "nan")


@pytest.mark.parametrize("args,needle", [
    (["--recipe", "anthropic-2024-04", "--m", "0", "--steps", "5"], "m must be a positive integer"),
    (["--recipe", "anthropic-2024-04", "--m", "8", "--steps", "0"], "steps must be a positive integer"),
    (["--recipe", "anthropic-2024-04", "--m", "8", "--steps", "-3"], "steps must be a positive integer"),
    (["--recipe", "anthropic-2023-01", "--m", "8", "--steps", "5"], "unknown recipe"),
    (["--recipe", "anthropic-2024-04", "--m", "8", "--steps", "5", "--source", "/no/such/store"], "not found"),
    (["--recipe", "anthropic-2024-04", "--m", "8", "--steps", "5", "--set", "nope=1"], "unknown hyperparameter"),
    (["--recipe", "anthropic-2024-04", "--m", "8", "--steps", "5", "--lr", "-1"], "lr must be > 0"),
    (["--recipe", "anthropic-2024-04", "--m", "eight", "--steps", "5"], "--m"),
])
def test_bad_input_gives_one_line_error(capsys, args, needle):
    code, out, err = _run(capsys, ["train", *args])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert "Traceback" not in err


def test_store_with_nan_rows_and_n_mismatch(capsys, nan_store, tmp_path):
    code, _, err = _run(capsys, ["train", "--recipe", "anthropic-2024-04", "--m", "8", "--steps", "5",
                                 "--batch-size", "64", "--source", nan_store])
    assert code == 2 and "non-finite" in err and len(err.strip().splitlines()) == 1
    good = write_store(tmp_path / "good", np.ones((3000, 8), np.float32))
    code, _, err = _run(capsys, ["train", "--recipe", "anthropic-2024-04", "--m", "8", "--steps", "5",
                                 "--source", str(good.path), "--n", "16"])
    assert code == 2 and "n mismatch" in err and len(err.strip().splitlines()) == 1


def test_unreadable_store_path(capsys, tmp_path):
    bad = tmp_path / "unreadable"
    bad.mkdir()
    (bad / "meta.json").write_text('{"n": 4')
    code, _, err = _run(capsys, ["train", "--recipe", "anthropic-2024-04", "--m", "8", "--steps", "5", "--source", str(bad)])
    assert code == 2 and "unreadable" in err and "Traceback" not in err


def test_killed_process_resumes_from_periodic_checkpoint(tmp_path, cache_dir):
    """SIGKILL a real `saescale train` after its first checkpoint; the rerun resumes and matches."""
    args = [sys.executable, "-m", "saescale", "train", "--recipe", "anthropic-2024-04", "--m", "64", "--steps", "1500",
            "--batch-size", "256", "--lr", "2e-3", "--threads", "1", "--json", *SYN]
    env = {**os.environ, "SAESCALE_CACHE": cache_dir}
    reference = json.loads(subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout)
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen(args + ["--checkpoint-dir", str(ckpt), "--checkpoint-every", "100"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not list(ckpt.glob("*.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(ckpt.glob("*.pt")), "no checkpoint appeared before the kill"
    resumed = json.loads(subprocess.run(args + ["--checkpoint-dir", str(ckpt)], capture_output=True, text=True,
                                        check=True, env=env).stdout)
    assert resumed["resumed_from_step"] > 0
    for key in ("loss", "mse", "l0", "l1", "dead_frac", "nmse"):
        assert resumed[key] == reference[key], key
