"""Suite-wide test settings: generated data goes to a per-session temp dir, Ray runs unauthenticated."""

import atexit
import os
import shutil
import tempfile

import pytest

_SESSION_CACHE = tempfile.mkdtemp(prefix="saescale-test-cache-")
atexit.register(shutil.rmtree, _SESSION_CACHE, True)
os.environ.setdefault("SAESCALE_CACHE", _SESSION_CACHE)
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def cache_dir() -> str:
    """Directory for generated stores shared by the whole session."""
    return os.environ["SAESCALE_CACHE"]
