"""examples/compare_detectors.ipynb runs top to bottom through the public API."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "compare_detectors.ipynb"


@pytest.mark.slow
def test_compare_detectors_notebook_executes(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DFBENCH_NOTEBOOK_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("DFBENCH_NOTEBOOK_FRAMES", "1")
    monkeypatch.setenv("DFBENCH_NOTEBOOK_LIMIT", "4")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the heatmap was not drawn"
    assert (tmp_path / "runs" / "effb2" / "matrix_auc.csv").is_file()
    assert (tmp_path / "runs" / "meso4" / "matrix_auc.csv").is_file()
