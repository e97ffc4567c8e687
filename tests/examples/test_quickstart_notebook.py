"""examples/embed_quickstart.ipynb runs top to bottom and tells its story: pictures, a search
whose neighbours differ from the query, a change map and fused S1 + S2 embeddings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
NotebookClient = pytest.importorskip("nbclient").NotebookClient

pytestmark = [pytest.mark.requires_nbclient, pytest.mark.requires_matplotlib]

NOTEBOOK = Path(__file__).parents[2] / "examples" / "embed_quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 4, "side by side, similarity, change and fused pictures"
    assert (tmp_path / "quickstart-output" / "pca_and_true_colour.png").stat().st_size > 0
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "same grid: True" in text
    assert "embedding" in text  # the progress bar's description
    assert text.count("neighbour date") == 5
    query = re.search(r"query +date .*cosine (\d\.\d+)", text)
    assert query and float(query.group(1)) == 1.0
    scores = [float(s) for s in re.findall(r"neighbour date .*cosine (-?\d\.\d+)", text)]
    assert len(set(scores)) > 1 and min(scores) < 0.999  # neighbours are told apart
    assert "s2_l2a+s1" in text and "median change" in text
