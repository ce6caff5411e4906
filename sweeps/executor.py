"""Packs as Ray tasks: the Ray session, the task body, submission with retries, completion.

One `@ray.remote` function trains a pack. Its resources are the spec's `resources` (per pack);
`max_retries` covers node and worker loss and `retry_exceptions=True` retries Python errors, both
up to `retries`. A `UserError` (deterministic bad input) is never retried: the task returns it as
a `TaskUserError` value and the pack's runs are marked failed with its one-line message. In the
task: `torch.set_num_threads(int(cpus))` (Ray reuses workers and torch fixes its thread count at
import), device "cuda" only when Ray assigned GPUs, the batch stream kept from the worker's
previous pack (its train split is not reloaded), checkpoints under
the results directory so a retried pack resumes where it stopped (when that storage is shared).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import ray

from sae_core.errors import UserError
from sae_core.config import ResolvedRun
from sweeps.data import DataRef
from sweeps.plan import Pack
from sweeps.results import utc_now
from sweeps.spec import Resources

T = TypeVar("T")


@dataclass(frozen=True)
class PackTask:
    """Everything a task needs; small and picklable (no store, no tensors)."""

    runs: tuple[ResolvedRun, ...]
    names: tuple[str, ...]
    data: DataRef
    cpus: float
    gpus: float
    checkpoint_dir: str
    checkpoint_every: int
    eval_max_rows: int | None
    downstream_windows: int = 0


@dataclass(frozen=True)
class TaskUserError:
    """A task's UserError, returned as a value so Ray neither retries it nor prints a traceback."""

    message: str


_STORES: dict[tuple[str, str], object] = {}  # per worker process: opened stores, reused across packs


def train_pack_task(task: PackTask) -> list[dict] | TaskUserError:
    """Train one pack in a Ray worker; each run's row, or the UserError that made training impossible."""
    try:
        return _train_pack(task)
    except UserError as exc:
        return TaskUserError(str(exc))


def _train_pack(task: PackTask) -> list[dict]:
    """Train one pack in a Ray worker; return each run's row (RunResult.row() + timestamps)."""
    import torch

    from sae_core.train import TrainOptions, train_pack

    threads = max(1, int(task.cpus))
    torch.set_num_threads(threads)
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    if device == "cuda" and task.gpus < 1:
        # Ray's GPU fractions are logical: cap this process so packs sharing a GPU cannot starve each other.
        torch.cuda.set_per_process_memory_fraction(task.gpus)
    key = (task.data.path, task.data.content_hash)
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = task.data.open()
    started = utc_now()
    results = train_pack(list(task.runs), store, TrainOptions(
        device=device, threads=threads, checkpoint_dir=task.checkpoint_dir,
        checkpoint_every=task.checkpoint_every, progress=False, eval_max_rows=task.eval_max_rows,
        downstream_windows=task.downstream_windows, reuse_stream=True),
        names=list(task.names))
    finished = utc_now()
    node = ray.get_runtime_context().get_node_id()
    return [{**r.row(), "run_id": r.name, "started_at": started, "finished_at": finished, "ray_node_id": node}
            for r in results]


_train_remote = ray.remote(train_pack_task)


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[str]:
    """Connect to Ray for the sweep (and disconnect after) unless the caller already did.

    address None: RAY_ADDRESS if set, else an embedded local instance ("local", dashboard off,
    every Ray process listening on 127.0.0.1 only, so token auth is off unless RAY_AUTH_MODE says
    otherwise). "auto" or host:port: an existing cluster. The caller's SIGTERM/SIGINT handlers
    survive ray.init (which installs its own). Yields the address used ("existing" when Ray was
    already initialised by the caller).
    """
    if ray.is_initialized():
        yield "existing"
        return
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if target == "local":
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            with _loopback_only():
                ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
        else:
            ray.init(address=target, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise UserError(f"--address {target}: cannot connect to a Ray cluster ({exc}); omit --address "
                        "(and unset RAY_ADDRESS) for an embedded local Ray") from None
    finally:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in handlers.items():
                if handler is not None:
                    signal.signal(signum, handler)
    try:
        yield target
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Make an embedded Ray node use 127.0.0.1 as its IP, so GCS, raylet, object manager and workers
    bind to loopback instead of every interface.

    Ray picks the node IP from the network unless `ENABLE_RAY_CLUSTER` is off (its Windows/macOS
    default, env RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER); then it uses 127.0.0.1 and its gRPC servers
    listen on loopback only. The env var reaches the processes ray.init spawns; the constant was
    read at import, so it is set for the call and restored after (a later cluster connect in this
    process must still find the real IP).
    """
    from ray._private import ray_constants

    saved_env = os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR)
    saved = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved_env


def check_resources(resources: Resources, embedded: bool) -> str | None:
    """None if some live node can run a pack; else a UserError (embedded Ray) or a warning (cluster)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    fields = {"CPU": "resources.cpus", "GPU": "resources.gpus",
              **{k: f"resources.custom.{k}" for k in resources.custom}}
    wanted = {k: v for k, v in {"CPU": resources.cpus, "GPU": resources.gpus, **resources.custom}.items() if v > 0}
    if any(all(node.get(k, 0) >= v for k, v in wanted.items()) for node in nodes):
        return None
    short = [k for k, v in wanted.items() if not any(node.get(k, 0) >= v for node in nodes)] or list(wanted)
    largest = ", ".join(f"{k}={max((node.get(k, 0) for node in nodes), default=0):g}" for k in wanted)
    message = f"{fields[short[0]]}: no Ray node offers a pack's resources {wanted} (largest node: {largest})"
    if embedded:
        raise UserError(message)
    return message + "; waiting for the autoscaler to add one"


@dataclass
class Finished:
    """A pack's outcome: rows from the task, or the error after Ray's retries."""

    pack: Pack
    rows: list[dict] | None
    error: str
    submitted_at: str
    finished_at: str
    detail: str = ""   # the full Ray error (with the task's traceback) when it failed


class PackExecutor:
    """Submits packs as Ray tasks and hands back finished ones as they complete."""

    def __init__(self, data: DataRef, resources: Resources, retries: int, checkpoint_dir: str,
                 checkpoint_every: int, eval_max_rows: int | None, downstream_windows: int = 0):
        self.data, self.resources, self.retries = data, resources, retries
        self.checkpoint_dir, self.checkpoint_every, self.eval_max_rows = checkpoint_dir, checkpoint_every, eval_max_rows
        self.downstream_windows = downstream_windows
        self._in_flight: dict[ray.ObjectRef, tuple[Pack, str]] = {}

    def __len__(self) -> int:
        return len(self._in_flight)

    def submit(self, pack: Pack) -> None:
        task = PackTask(tuple(r.run for r in pack.runs), tuple(r.run_id for r in pack.runs), self.data,
                        self.resources.cpus, self.resources.gpus, self.checkpoint_dir, self.checkpoint_every,
                        self.eval_max_rows, self.downstream_windows)
        ref = _train_remote.options(
            num_cpus=self.resources.cpus, num_gpus=self.resources.gpus, resources=dict(self.resources.custom),
            max_retries=self.retries, retry_exceptions=True, name=f"sae-pack-{pack.pack_id}",
        ).remote(task)
        self._in_flight[ref] = (pack, utc_now())

    def wait(self, timeout: float) -> list[Finished]:
        """Packs finished within `timeout` seconds (possibly none)."""
        if not self._in_flight:
            return []
        done, rest = _signal_safe(ray.wait, list(self._in_flight), num_returns=1, timeout=timeout)
        if done and rest:
            more, _ = _signal_safe(ray.wait, rest, num_returns=len(rest), timeout=0)
            done += more
        out = []
        for ref in done:
            pack, submitted = self._in_flight.pop(ref)
            try:
                result = _signal_safe(ray.get, ref)
            except ray.exceptions.RayError as exc:
                out.append(Finished(pack, None, _one_line(exc), submitted, utc_now(), str(exc)))
                continue
            if isinstance(result, TaskUserError):
                out.append(Finished(pack, None, f"UserError: {result.message}", submitted, utc_now(), result.message))
            else:
                out.append(Finished(pack, result, "", submitted, utc_now()))
        return out


def _signal_safe(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a Ray API; an exception a signal handler raised inside it comes out as itself.

    A Python signal handler that raises (the CLI's SIGTERM/SIGINT policy) while Ray's Cython
    code waits surfaces as "SystemError: ... returned a result with an exception set", with the
    handler's exception as its cause; re-raise that cause (an interrupt, never an Exception).
    """
    try:
        return fn(*args, **kwargs)
    except SystemError as exc:
        cause = exc.__cause__
        if isinstance(cause, BaseException) and not isinstance(cause, Exception):
            raise cause from None
        raise


def _one_line(exc: BaseException) -> str:
    """The error of a failed task: the exception's own message, not Ray's traceback wrapper."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        text = f"{type(cause).__name__}: {cause}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:2000]

