"""Per-run checkpoint files for a pack: model slice, Adam moments, schedules, data position, RNG.

Each run of a pack has its own file `<dir>/<name>.pt`, written atomically (sae_core.files). Files
are loaded with `weights_only=True`: a checkpoint holds tensors and plain values only, so a file
planted in a shared checkpoints/ directory cannot run code; one that is not a valid weights-only
checkpoint is ignored (the pack trains from step 0 and overwrites it). Schedules and the data
stream are pure functions of the step, so the step (plus the Adam step count and the dead-feature
tracker) is the whole training state beyond the tensors. A pack resumes only when every run has a
checkpoint at the same step for the same config and data.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from sae_core.files import atomic_path, ensure_dir

FORMAT = 1
log = logging.getLogger(__name__)


def checkpoint_path(directory: str | os.PathLike[str], name: str) -> Path:
    return Path(directory) / f"{name}.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically write one run's checkpoint (no temp file survives a failure)."""
    ensure_dir(path.parent)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """One checkpoint loaded weights-only, or None (with a warning) if it is not a valid one."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as exc:
        log.warning("ignoring checkpoint %s: not a weights-only checkpoint (%s)", path,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    return ckpt if isinstance(ckpt, dict) else None


def load_pack_checkpoints(directory: str | os.PathLike[str], names: list[str],
                          identities: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Every run's checkpoint if all exist, load weights-only, match their identity and share one step."""
    loaded = []
    for name, identity in zip(names, identities):
        path = checkpoint_path(directory, name)
        if not path.exists():
            return None
        ckpt = load_checkpoint(path)
        if ckpt is None or ckpt.get("format") != FORMAT or ckpt.get("identity") != identity:
            return None
        loaded.append(ckpt)
    if len({c["step"] for c in loaded}) != 1:
        return None
    return loaded


def remove_checkpoints(directory: str | os.PathLike[str], names: list[str]) -> None:
    for name in names:
        checkpoint_path(directory, name).unlink(missing_ok=True)
