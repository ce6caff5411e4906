"""Collects each interop test's measured differences and prints them as one table at the end."""

from __future__ import annotations

from typing import Any

import pytest

_ROWS: list[dict[str, Any]] = []


@pytest.fixture
def interop_report() -> list[dict[str, Any]]:
    """Append one row per loaded export (recipe, architecture, max abs differences)."""
    return _ROWS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ROWS:
        return
    terminalreporter.section("SAELens interop: max |SAELens - ours|")
    cols = list(_ROWS[0])
    terminalreporter.write_line("  ".join(f"{c:>22}" for c in cols))
    for row in _ROWS:
        terminalreporter.write_line("  ".join(f"{v:>22.3g}" if isinstance(v, float) else f"{str(v):>22}" for v in row.values()))
