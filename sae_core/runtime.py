"""Where things run and live: the torch device a user asked for, and the cache directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sae_core.errors import UserError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> "torch.device":
    """'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' (cuda when available), refusing devices this machine lacks."""
    import torch  # here, not at module level: callers that only validate names stay light

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device must be cpu, cuda, cuda:N, mps or auto, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device must be cpu, cuda, cuda:N, mps or auto, got {device!r}")
    return dev


def default_cache_dir() -> Path:
    """Generated data and converted models: $SAESCALE_CACHE or ~/.cache/saescale."""
    return Path(os.environ.get("SAESCALE_CACHE") or Path.home() / ".cache" / "saescale")
