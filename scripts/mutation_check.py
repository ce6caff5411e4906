"""Mutation check: every listed change to a recipe's code must make its pin tests fail.

Reads scripts/mutations/*.toml (format in docs/pins.md):

    [[mutation]]
    file = "sae_core/arch.py"      # relative to the repo root
    old = "exact source text"      # must occur exactly once in the file
    new = "mutated text"
    why = "tanh penalty without decoder norm"
    tests = ["tests/core/test_pin_losses.py"]   # optional; default tests/core

Each mutation is applied in a scratch copy of the repository (its tracked and untracked,
not ignored files), the tests run with `python -m pytest -x -q -p no:cacheprovider`, and the
mutation is "killed" when they fail. The unmutated tests must pass first (baseline). Exit
status: 0 all killed, 1 some survived (or the baseline failed), 2 bad mutation files.

    python scripts/mutation_check.py [--only FILE.toml] [--jobs N] [--list] [--timeout S]
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TESTS = ("tests/core",)
KEYS = {"file", "old", "new", "why", "tests"}


class MutationFileError(Exception):
    """A mutation file is malformed or a mutation's `old` text is not found exactly once."""


@dataclass(frozen=True)
class Mutation:
    """One source change and the tests expected to catch it."""

    source: str          # "<toml name>#<index>" for reports
    file: str
    old: str
    new: str
    why: str
    tests: tuple[str, ...]

    def apply(self, text: str) -> str:
        """`text` with the single occurrence of `old` replaced by `new`."""
        return text.replace(self.old, self.new, 1)


def load_mutations(paths: list[Path]) -> list[Mutation]:
    """Parse mutation TOML files; raise MutationFileError naming the file and entry on bad input."""
    out: list[Mutation] = []
    for path in paths:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise MutationFileError(f"{path}: {exc}") from None
        entries = data.get("mutation")
        if not isinstance(entries, list) or not entries:
            raise MutationFileError(f"{path}: no [[mutation]] entries")
        for i, entry in enumerate(entries):
            where = f"{path.name}#{i}"
            unknown = set(entry) - KEYS
            missing = {"file", "old", "new", "why"} - set(entry)
            if unknown or missing:
                raise MutationFileError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
            for key in ("file", "old", "new", "why"):
                if not isinstance(entry[key], str) or (key != "new" and not entry[key]):
                    raise MutationFileError(f"{where}: {key} must be a non-empty string")
            if entry["old"] == entry["new"]:
                raise MutationFileError(f"{where}: old and new are the same text")
            tests = entry.get("tests", list(DEFAULT_TESTS))
            if not isinstance(tests, list) or not tests or not all(isinstance(t, str) and t for t in tests):
                raise MutationFileError(f"{where}: tests must be a non-empty list of paths")
            out.append(Mutation(where, entry["file"], entry["old"], entry["new"], entry["why"], tuple(tests)))
    return out


def check_targets(root: Path, mutations: list[Mutation]) -> list[str]:
    """Problems with the mutations against the tree at `root` (each `old` exactly once; tests exist)."""
    problems = []
    for m in mutations:
        path = root / m.file
        if not path.is_file():
            problems.append(f"{m.source}: file {m.file} not found")
            continue
        count = path.read_text().count(m.old)
        if count != 1:
            problems.append(f"{m.source}: `old` occurs {count} times in {m.file} (must be exactly once): {m.old!r}")
        for t in m.tests:
            if not (root / t.split("::")[0]).exists():
                problems.append(f"{m.source}: test path {t} not found")
    return problems


def repo_files(root: Path) -> list[str]:
    """Tracked and untracked, not ignored files of the git work tree at `root`."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         check=True, capture_output=True).stdout.decode()
    return [f for f in out.split("\0") if f and (root / f).is_file()]


def make_scratch(root: Path, files: list[str], parent: Path) -> Path:
    """A copy of `files` of `root` in a fresh directory under `parent`."""
    scratch = Path(tempfile.mkdtemp(prefix="mut-", dir=parent))
    for f in files:
        dst = scratch / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / f, dst)
    return scratch


def run_tests(scratch: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    """(pytest exit status, output tail) of `tests` in `scratch`; status -1 on timeout."""
    env = {**os.environ, "PYTHONPATH": str(scratch), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "timed out"
    return proc.returncode, (proc.stdout + proc.stderr)[-2000:]


def _imports_scratch(scratch: Path, file: str) -> bool:
    """Whether Python started in `scratch` imports the module of `file` from the scratch copy."""
    module = file.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    proc = subprocess.run([sys.executable, "-c", f"import {module}; print({module}.__file__)"], cwd=scratch,
                          env=env, capture_output=True, text=True)
    return proc.returncode == 0 and Path(proc.stdout.strip()).resolve().is_relative_to(scratch.resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="FILE.toml",
                        help="run only this mutation file (name or path; repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="mutations tested in parallel (default 1)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per test run (a timeout counts as killed)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="repository root")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    mdir = root / "scripts" / "mutations"
    paths = sorted(mdir.glob("*.toml"))
    if args.only:
        wanted = {Path(o).name for o in args.only}
        paths = [p for p in paths if p.name in wanted]
        missing = wanted - {p.name for p in paths}
        if missing:
            print(f"error: no mutation file {', '.join(sorted(missing))} in {mdir}", file=sys.stderr)
            return 2
    if args.jobs < 1:
        print("error: --jobs must be >= 1", file=sys.stderr)
        return 2
    try:
        mutations = load_mutations(paths)
    except MutationFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = check_targets(root, mutations)
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    if args.list:
        for m in mutations:
            print(f"{m.source:24s} {m.file:24s} {m.why}  [{' '.join(m.tests)}]")
        print(f"{len(mutations)} mutations")
        return 0
    return _run_all(root, mutations, args.jobs, args.timeout)


def _run_all(root: Path, mutations: list[Mutation], jobs: int, timeout: float) -> int:
    started = time.time()
    files = repo_files(root)
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        scratches: queue.Queue[Path] = queue.Queue()
        for _ in range(min(jobs, max(1, len(mutations)))):
            scratches.put(make_scratch(root, files, Path(tmp)))
        probe = scratches.get()
        if not _imports_scratch(probe, mutations[0].file):
            print(f"error: Python does not import {mutations[0].file} from the scratch copy", file=sys.stderr)
            return 2
        baseline = sorted({t for m in mutations for t in m.tests})
        rc, tail = run_tests(probe, tuple(baseline), timeout)
        scratches.put(probe)
        if rc != 0:
            print(f"baseline FAILED (the unmutated tests must pass): {' '.join(baseline)}\n{tail}")
            return 1
        print(f"baseline passed in {time.time() - started:.0f}s; {len(mutations)} mutations, {jobs} job(s)", flush=True)

        def one(m: Mutation) -> tuple[Mutation, int, float]:
            scratch = scratches.get()
            target = scratch / m.file
            original = target.read_text()
            t0 = time.time()
            try:
                target.write_text(m.apply(original))
                rc, _ = run_tests(scratch, m.tests, timeout)
            finally:
                target.write_text(original)
                scratches.put(scratch)
            verdict = "KILLED" if rc != 0 else "SURVIVED"
            how = {1: "", -1: " (timeout)"}.get(rc, f" (pytest exit {rc})")
            print(f"{verdict:8s} {time.time() - t0:5.1f}s {m.source:24s} {m.file}: {m.why}{how if rc else ''}",
                  flush=True)
            return m, rc, time.time() - t0

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(one, mutations))
    survived = [m for m, rc, _ in results if rc == 0]
    print(f"\n{len(mutations)} mutations: {len(mutations) - len(survived)} killed, {len(survived)} survived; "
          f"{time.time() - started:.0f}s with --jobs {jobs}")
    for m in survived:
        print(f"  survived: {m.source} {m.file}: {m.why}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
