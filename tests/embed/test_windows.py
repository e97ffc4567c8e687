"""Window grid maths: coverage, ownership of patches, block spans, output geo-referencing."""

from __future__ import annotations

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from xterrafm.embedding.windows import AxisWindows, output_geobox, window_centres


@pytest.mark.parametrize("size,tile,stride", [(448, 224, 224), (450, 224, 224), (100, 224, 224),
                                              (448, 224, 112), (500, 64, 48), (65, 64, 16)])
def test_windows_cover_scene_and_none_is_dropped(size, tile, stride):
    ax = AxisWindows(size, tile, stride)
    starts = np.arange(ax.n_windows) * stride
    assert starts[0] == 0
    assert starts[-1] + tile >= size  # last (maybe partial) window reaches the edge
    assert starts[-1] < size  # and starts inside the scene: no all-padding window
    if ax.n_windows > 1:
        assert starts[-2] + tile < size  # one window fewer would leave pixels uncovered
    assert ax.padded_size == starts[-1] + tile


@pytest.mark.parametrize("size,tile,stride", [(448, 224, 224), (450, 224, 112), (300, 64, 32),
                                              (300, 96, 32), (37, 64, 16), (1000, 224, 160)])
def test_patch_owner_is_most_central_window(size, tile, stride):
    ax = AxisWindows(size, tile, stride, level="patch")
    cells = np.arange(ax.n_out)
    k, off = ax.owner(cells)
    assert ax.n_out == -(-size // 16)
    assert np.all((off >= 0) & (off < tile // 16))
    assert np.all(np.diff(k) >= 0)
    assert set(k) == set(range(ax.n_windows))  # every window owns some patch
    # patch centre is at least as central in its owner as in any other window covering it
    centre = cells * 16 + 8.0
    for i, c in enumerate(centre):
        covering = [w for w in range(ax.n_windows) if w * stride <= c < w * stride + tile]
        dist = {w: abs(w * stride + tile / 2 - c) for w in covering}
        assert dist[int(k[i])] == min(dist.values())


def test_spans_partition_outputs_and_cover_needed_pixels():
    ax = AxisWindows(700, 96, 32, level="patch")
    spans = ax.spans(10)
    assert [s.out_start for s in spans][0] == 0 and spans[-1].out_stop == ax.n_out
    for a, b in zip(spans, spans[1:], strict=False):
        assert a.out_stop == b.out_start
    for s in spans:
        k, _ = ax.owner(np.arange(s.out_start, s.out_stop))
        assert s.win_start == k.min() and s.win_stop == k.max() + 1
        assert s.pix_start == s.win_start * 32 and s.pix_stop == (s.win_stop - 1) * 32 + 96


def test_output_geobox_centres_are_window_centres():
    gbox = GeoBox.from_bbox((500000, 4000000, 500000 + 4500, 4000000 + 3000), "EPSG:32633",
                            resolution=10)
    y, x = AxisWindows(300, 64, 48), AxisWindows(450, 64, 48)
    out = output_geobox(gbox, y, x)
    assert out.shape == (y.n_windows, x.n_windows)
    assert out.crs == gbox.crs
    ys, xs = window_centres(gbox, y, x)
    np.testing.assert_allclose(out.coords["y"].values, ys)
    np.testing.assert_allclose(out.coords["x"].values, xs)
    np.testing.assert_allclose(xs[:2], [500000 + 320, 500000 + 800])  # 32 px, 80 px in
    patch = output_geobox(gbox, AxisWindows(300, 64, 64, "patch"), AxisWindows(450, 64, 64, "patch"))
    assert patch.shape == (19, 29)
    assert patch.resolution.x == 160
    np.testing.assert_allclose(patch.coords["x"].values[0], 500000 + 80)


@pytest.mark.parametrize("kwargs,match", [
    (dict(size=100, tile=100, stride=100), "multiple of the 16 px patch size"),
    (dict(size=100, tile=64, stride=0), "stride must be between"),
    (dict(size=100, tile=64, stride=65), "stride must be between"),
    (dict(size=100, tile=64, stride=24, level="patch"), "multiple of the 16 px patch size"),
    (dict(size=100, tile=64, stride=64, level="pixel"), "level must be one of"),
])
def test_bad_window_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AxisWindows(**kwargs)
