"""examples/embed_quickstart.ipynb runs top to bottom and produces its picture."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
NotebookClient = pytest.importorskip("nbclient").NotebookClient

pytestmark = pytest.mark.requires_nbclient

NOTEBOOK = Path(__file__).parents[2] / "examples" / "embed_quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no PCA picture shown"
    assert (tmp_path / "quickstart-output" / "pca_and_landcover.png").stat().st_size > 0
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert text.count("neighbour") == 5 and "land cover" in text
