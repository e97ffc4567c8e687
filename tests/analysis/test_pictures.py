"""Pictures: geo-referenced, the no-data hatch where the cube is empty, a legend naming it."""

from __future__ import annotations

import numpy as np
import pytest

import xterrafm  # noqa: F401  (registers the accessor)
from xterrafm.analysis.pictures import plot_map, plot_pca, plot_side_by_side, plot_true_colour
from xterrafm.analysis.similarity_map import similarity
from xterrafm.pca import NODATA_RGB

pytestmark = pytest.mark.requires_matplotlib


@pytest.fixture(autouse=True)
def _agg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def _legend_labels(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_pca_picture_on_coordinates_with_hatched_nodata(make_emb):
    values = np.random.default_rng(0).standard_normal((1, 8, 6, 7))
    values[0, :, 0, 0] = np.nan  # the top-left cell (y is decreasing)
    emb = make_emb(values=values)
    ax = emb.terrafm.plot_pca()
    img = ax.images[0].get_array()
    left, right, bottom, top = ax.images[0].get_extent()
    assert (left, right) == (600000.0, 600000.0 + 160 * 7)
    assert (bottom, top) == (5100000.0, 5100000.0 + 160 * 6)
    cell = img.shape[0] // 6
    corner = {tuple(c) for c in np.asarray(img[:cell, :cell]).reshape(-1, 3)}
    assert corner == {NODATA_RGB, (255, 255, 255)}  # the hatch, and only there
    assert NODATA_RGB not in {tuple(c) for c in np.asarray(img[cell:, cell:]).reshape(-1, 3)}
    assert _legend_labels(ax) == ["no data"] and "EPSG:32632" in ax.get_xlabel()


def test_true_colour_similarity_map_and_side_by_side(make_cube, make_emb, tmp_path):
    cube = make_cube(64, 64, modality="s2_l2a", n_dates=1, nan_box=(0, 8, 0, 8))
    ax = cube.terrafm.plot_true_colour()
    img = np.asarray(ax.images[0].get_array())
    assert img.shape == (64, 64, 3) and tuple(img[0, 0]) == NODATA_RGB
    assert _legend_labels(ax) == ["no data"] and "B04" in ax.get_title()
    s1 = make_cube(64, 64, modality="s1", n_dates=1)
    assert "VV" in s1.terrafm.plot_true_colour().get_title()

    emb = make_emb()
    sim = similarity(emb, x=float(emb.x[2]), y=float(emb.y[3]), time=emb.time.values[0])
    ax = sim.terrafm.plot_map(time=0, vmin=-1, vmax=1)
    assert ax.images[0].get_clim() == (-1, 1) and _legend_labels(ax) == ["query"]
    fig = plot_side_by_side(cube, make_emb(n_time=1))
    assert len(fig.axes) == 2
    fig.savefig(tmp_path / "pair.png")
    assert (tmp_path / "pair.png").stat().st_size > 1000


def test_pictures_ask_which_date(make_emb):
    with pytest.raises(ValueError, match="time="):
        plot_pca(make_emb())
    with pytest.raises(ValueError, match="y and x"):
        plot_map(make_emb().isel(y=0))
    with pytest.raises(ValueError, match="band"):
        plot_true_colour(make_emb())
