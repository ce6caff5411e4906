"""Per-run checkpoint files for a pack: model slice, Adam moments, schedules, data position, RNG.

Each run of a pack has its own file `<dir>/<name>.pt`, written atomically (temp + rename).
Schedules and the data stream are pure functions of the step, so the step (plus the Adam step
count and the dead-feature tracker) is the whole training state beyond the tensors. A pack
resumes only when every run has a checkpoint at the same step for the same config and data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = 1


def checkpoint_path(directory: str | os.PathLike[str], name: str) -> Path:
    return Path(directory) / f"{name}.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically write one run's checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def load_pack_checkpoints(directory: str | os.PathLike[str], names: list[str],
                          identities: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Every run's checkpoint if all exist, match their identity and share one step; else None."""
    loaded = []
    for name, identity in zip(names, identities):
        path = checkpoint_path(directory, name)
        if not path.exists():
            return None
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if ckpt.get("format") != FORMAT or ckpt.get("identity") != identity:
            return None
        loaded.append(ckpt)
    if len({c["step"] for c in loaded}) != 1:
        return None
    return loaded


def remove_checkpoints(directory: str | os.PathLike[str], names: list[str]) -> None:
    for name in names:
        checkpoint_path(directory, name).unlink(missing_ok=True)
