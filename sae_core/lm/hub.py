"""Is the Hugging Face hub reachable? A quick probe so that offline runs fail in seconds.

Without it, transformers retries an unreachable hub for about 30 s and prints a log line per
retry before giving up.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

_OFFLINE_VALUES = {"1", "true", "yes", "on"}


def hub_endpoint() -> str:
    """The hub URL that huggingface_hub would use (HF_ENDPOINT or https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = 5.0) -> bool:
    """True when a TCP connection to the hub's host succeeds and offline mode is not set."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _OFFLINE_VALUES:
        return False
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False
