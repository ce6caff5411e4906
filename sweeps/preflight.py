"""Preflight: refuse a sweep that cannot work before anything is written or Ray is started.

`check_spec` runs right after the spec parses (before the data is generated or opened): the
`--results` path, the resources against an embedded Ray's machine, and the disk and memory that
generating the data needs. `check_plan` runs after the plan is built (before the results
directory is locked): the memory of the largest pack. Each refusal is one `UserError` naming the
field and the numbers (exit 2); a read-only results location is a `StorageError` (exit 74).
Estimates are estimates: they refuse what cannot fit, not what might be tight.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psutil

from sae_core.errors import StorageError, UserError
from sae_core.memory import pack_bytes
from sae_core.runtime import default_cache_dir
from sweeps.plan import Plan
from sweeps.spec import SweepSpec, SyntheticSource

GB = 2**30


def check_spec(spec: SweepSpec, results: Path, address: str | None) -> None:
    """Checks that need only the spec and the machine (see the module docstring)."""
    check_results_path(results)
    if _embedded(address):
        check_local_resources(spec)
    if isinstance(spec.activations, SyntheticSource):
        check_synthetic_data(spec.activations)


def check_plan(plan: Plan, address: str | None) -> None:
    """The largest pack's memory estimate against the memory free here (embedded Ray only)."""
    if not _embedded(address) or plan.spec.resources.gpus > 0:
        return
    free = psutil.virtual_memory().available
    for planned in sorted(plan.runs, key=lambda r: r.run.m, reverse=True)[:1]:
        need = pack_bytes(plan.store.n, plan.store.o, planned.run.m, planned.run.batch_size, 1)
        if need > free:
            raise UserError(f"design.features: a run with m={planned.run.m} (n={plan.store.n}, batch "
                            f"{planned.run.batch_size}) needs about {need / GB:.3g} GB of memory to train, but only "
                            f"{free / GB:.3g} GB is available on this machine")


def check_results_path(results: Path) -> None:
    """--results must be a directory (or creatable as one) on writable storage."""
    if results.exists() and not results.is_dir():
        raise UserError(f"--results {results}: is a file, not a directory")
    ancestor = results
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise UserError(f"--results {results}: {ancestor} is a file, so no directory can be made below it")
    if ancestor.is_dir() and not os.access(ancestor, os.W_OK | os.X_OK):
        raise StorageError(f"cannot write {results}: {ancestor} is not writable (read-only or no permission)")


def check_local_resources(spec: SweepSpec) -> None:
    """resources.cpus / gpus of one pack must fit on this machine, where the embedded Ray runs."""
    cpus, gpus = _local_cpus(), _local_gpus()
    if spec.resources.cpus > cpus:
        raise UserError(f"resources.cpus: a pack asks for {spec.resources.cpus:g} CPUs, this machine has {cpus:g} "
                        "(embedded Ray); lower it, or pass --address for a cluster")
    if spec.resources.gpus > gpus:
        raise UserError(f"resources.gpus: a pack asks for {spec.resources.gpus:g} GPUs, this machine has {gpus:g} "
                        "(embedded Ray); lower it, or pass --address for a cluster")
    if spec.resources.custom:
        name = next(iter(spec.resources.custom))
        raise UserError(f"resources.custom.{name}: an embedded Ray has no custom resources; pass --address "
                        "for a cluster that defines it")


def check_synthetic_data(src: SyntheticSource) -> None:
    """Disk for the store and memory for generating it, unless it is already in the cache."""
    from sweeps.data import synthetic_config

    cfg = synthetic_config(src)
    cache = Path(src.cache_dir).expanduser() if src.cache_dir else default_cache_dir()
    path = cache / f"synthetic-{cfg.key()}"
    if (path / "meta.json").is_file():
        return
    directions = 4 * src.true_features * src.n
    chunk = max(1024, min(65536, (1 << 25) // src.true_features))
    memory = 2 * directions + 8 * chunk * src.n + (12 * chunk * src.true_features if src.groups else 0)
    free = psutil.virtual_memory().available
    if memory > free:
        raise UserError(f"activations.true_features: generating {src.true_features} true features of n={src.n} "
                        f"needs about {memory / GB:.3g} GB of memory, only {free / GB:.3g} GB is available")
    disk = 4 * src.tokens * src.n + directions
    where = _existing(cache)
    avail = shutil.disk_usage(where).free
    if disk > avail:
        raise UserError(f"activations.tokens: the store of {src.tokens} tokens x n={src.n} needs about "
                        f"{disk / GB:.3g} GB on {where}, only {avail / GB:.3g} GB is free")


def _embedded(address: str | None) -> bool:
    return (address or os.environ.get("RAY_ADDRESS") or "local") == "local"


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _local_cpus() -> float:
    """CPUs an embedded Ray would offer (Ray's own count, which honours cgroup limits)."""
    from ray._private.utils import get_num_cpus

    return float(get_num_cpus())


def _local_gpus() -> float:
    """GPUs an embedded Ray would offer (Ray's NVIDIA detection; CUDA_VISIBLE_DEVICES honoured)."""
    from ray._private.accelerators import NvidiaGPUAcceleratorManager

    visible = NvidiaGPUAcceleratorManager.get_current_process_visible_accelerator_ids()
    if visible is not None:
        return float(len(visible))
    return float(NvidiaGPUAcceleratorManager.get_current_node_num_accelerators())
