"""`benchmarks peer` offers both peers and works without them installed: --help, and a missing peer
named in one error line before anything is measured."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from benchmarks import peer_saelens
from benchmarks.__main__ import app


def test_peer_help_lists_both_peers_without_any_installed():
    result = CliRunner().invoke(app, ["peer", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "saelens" in result.output and "dictionary-learning" in result.output and "--install-peer" in result.output


def test_missing_peer_is_one_error_line_before_measuring(tmp_path, monkeypatch):
    monkeypatch.setattr(peer_saelens, "PEER_VENV", tmp_path / "saelens")
    result = CliRunner().invoke(app, ["peer", "--peer", "saelens", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "error: peer not installed; rerun with --install-peer" in result.output
    assert not (tmp_path / "out").exists()


def test_missing_saelens_peer_names_the_install_flag(tmp_path, monkeypatch):
    monkeypatch.setattr(peer_saelens, "PEER_VENV", tmp_path / "saelens")
    with pytest.raises(RuntimeError, match="--install-peer"):
        peer_saelens.ensure_saelens(install=False)
    assert not (tmp_path / "saelens").exists()      # nothing created without --install-peer
