"""The notebooks run top to bottom (nbclient) on a small synthetic results directory."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("name", ["loss_frontier.ipynb", "lr_extrapolation.ipynb"])
def test_notebook_executes_and_draws(name, small_dir, monkeypatch):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "commit notebooks without outputs"
    monkeypatch.setenv("SAESCALE_RESULTS", str(small_dir))
    monkeypatch.setenv("SAESCALE_BOOTSTRAP", "30")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= (3 if name == "loss_frontier.ipynb" else 1)
