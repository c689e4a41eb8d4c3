"""Every notebook runs top to bottom on its smallest setting (ASGDJAX_NOTEBOOK_QUICK=1), so none can rot."""

import os

import pytest

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "notebooks")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("quickstart.ipynb", marks=pytest.mark.slow),
        pytest.param("staleness_sweep.ipynb", marks=pytest.mark.slow),
        "paper_reproduction.ipynb",
    ],
)
def test_notebook_runs(name, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("ASGDJAX_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any(o.get("output_type") in ("stream", "display_data", "execute_result") for o in outputs)
