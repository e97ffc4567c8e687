"""The eval report and ``python -m xterrafm eval``."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from rasterio.transform import from_origin

from xterrafm.cli import main
from xterrafm.eval.inputs import LabelledSamples
from xterrafm.eval.knn_probe import knn
from xterrafm.eval.linear import fit_linear_probe
from xterrafm.eval.metrics import macro_accuracy
from xterrafm.eval.report import evaluate_samples, format_table
from xterrafm.eval.splits import spatial_block_split

CRS = "EPSG:32632"


def _grid_samples(n=24, dim=8, noise=0.3, seed=0):
    """Labels in 3 x 3-cell regions of an n x n grid, features = noisy one-hot of the label."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    region_label = rng.integers(0, 4, size=(n // 3 + 1, n // 3 + 1))
    labels = region_label[rows // 3, cols // 3]
    feats = np.eye(dim)[labels] * 3 + rng.normal(size=(n, n, dim)) * noise
    return rows, cols, labels, feats.astype(np.float32)


def test_evaluate_samples_separable_and_chance():
    rows, cols, labels, feats = _grid_samples()
    samples = LabelledSamples(
        x=feats.reshape(-1, 8), y=labels.ravel(), rows=rows.ravel(), cols=cols.ravel(),
        times=np.zeros(labels.size, np.int64),
    )
    out = evaluate_samples(samples, ks=(1, 20), block=4)
    by_method = {(r.method, r.setting): r for r in out}
    assert by_method["knn", "k=1 T=0.07"].value == 1.0
    assert by_method["knn", "k=20 T=0.07"].value == 1.0
    linear = next(r for r in out if r.method == "linear")
    assert linear.value == 1.0
    assert linear.n_train + linear.n_test == labels.size
    # checkerboard of 4 x 4 blocks over a 24 x 24 grid: half of the samples each
    assert linear.n_train == linear.n_test == labels.size // 2
    table = format_table(out, title="t")
    assert table.splitlines()[0] == "t"
    assert "k=20 T=0.07" in table and "1.0000" in table


def _long_tailed_samples(n=60, seed=1):
    """A 95 : 5 two-class grid whose classes overlap: unit Gaussians at -1 and +1."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    labels = (rng.random((n, n)) < 0.05).astype(np.int64)
    feats = rng.normal(size=(n, n, 2))
    feats[..., 0] += 2.0 * labels - 1.0  # one informative feature, one of noise
    return LabelledSamples(x=feats.reshape(-1, 2).astype(np.float32), y=labels.ravel(),
                           rows=rows.ravel(), cols=cols.ravel(),
                           times=np.zeros(labels.size, np.int64))


def test_balanced_probes_report_macro_accuracy_and_recover_the_rare_class():
    samples = _long_tailed_samples()
    plain = {r.method: r for r in evaluate_samples(samples, ks=(20,), block=4)}
    balanced = {r.method: r for r in evaluate_samples(samples, ks=(20,), block=4,
                                                      class_weight="balanced")}
    assert {r.metric for r in plain.values()} == {"top-1 acc"}
    assert {r.metric for r in balanced.values()} == {"macro acc"}
    assert balanced["linear"].setting == "AdamW 100 ep, balanced"
    # the majority class recalls one class of two; the balanced probes recall both
    assert balanced["majority class"].value == pytest.approx(0.5)
    train = spatial_block_split(samples.rows, samples.cols, block=4)
    xtr, ytr, xte, yte = samples.x[train], samples.y[train], samples.x[~train], samples.y[~train]
    plain_macro = {"knn": macro_accuracy(yte, knn(xtr, ytr, xte, k=20)),
                   "linear": macro_accuracy(yte, fit_linear_probe(xtr, ytr).predict(xte))}
    for method in ("knn", "linear"):
        # fitted to the 95 : 5 prior, the plain probes give most of the rare class up
        assert balanced[method].value > plain_macro[method] + 0.1, method
        assert balanced[method].value > 0.7, method
    assert plain["linear"].value > 0.9  # top-1 accuracy, near the common class's share


def _write_inputs(tmp_path, feats, labels):
    n = labels.shape[0]
    res_emb, x0, y0 = 40.0, 600_000.0, 5_100_000.0
    emb = xr.DataArray(
        feats.transpose(2, 0, 1)[None],
        dims=("time", "embedding", "y", "x"),
        coords={"y": y0 - (np.arange(n) + 0.5) * res_emb, "x": x0 + (np.arange(n) + 0.5) * res_emb},
        attrs={"level": "tile", "tile": 4, "stride": 4, "model": "hand-made"},
        name="embeddings",
    ).rio.write_crs(CRS)
    store = tmp_path / "emb.zarr"
    emb.to_dataset().to_zarr(store)
    # the label raster at 10 m: each embedding cell is 4 x 4 label pixels (one is nodata)
    fine = np.repeat(np.repeat(labels.astype(np.uint8) + 1, 4, axis=0), 4, axis=1)
    fine[::4, ::4] = 0
    raster = tmp_path / "labels.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=fine.shape[1], height=fine.shape[0],
                       count=1, dtype="uint8", crs=CRS, transform=from_origin(x0, y0, 10, 10),
                       nodata=0) as dst:
        dst.write(fine, 1)
    return store, raster


def test_cli_scores_an_embedding_store_against_a_label_raster(tmp_path, capsys):
    _, _, labels, feats = _grid_samples()
    store, raster = _write_inputs(tmp_path, feats, labels)
    rc = main(["eval", "--embeddings", str(store), "--labels", str(raster), "--k", "1", "5",
               "--block", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    knn_lines = [line for line in out.splitlines() if line.startswith("knn")]
    assert len(knn_lines) == 2
    assert all(line.split()[-3] == "1.0000" for line in knn_lines)
    assert any(line.startswith("linear") for line in out.splitlines())
    rc = main(["eval", "--embeddings", str(store), "--labels", str(raster), "--k", "5",
               "--block", "3", "--class-weight", "balanced"])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("knn", "lin"))]
    assert rc == 0 and len(lines) == 2
    assert all("balanced" in ln and "macro acc" in ln and ln.split()[-3] == "1.0000"
               for ln in lines)


def test_cli_shuffled_labels_score_near_chance(tmp_path, capsys):
    _, _, labels, feats = _grid_samples()
    rng = np.random.default_rng(1)
    store, raster = _write_inputs(tmp_path, feats, rng.integers(0, 4, size=labels.shape))
    assert main(["eval", "--embeddings", str(store), "--labels", str(raster), "--k", "20",
                 "--no-linear"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("knn"))
    acc, n_test = float(line.split()[-3]), int(line.split()[-1])
    std = np.sqrt(0.25 * 0.75 / n_test)
    assert abs(acc - 0.25) < 4 * std


def test_cli_usage_errors(tmp_path):
    assert main(["eval", "--embeddings", str(tmp_path / "x.zarr")]) == 2
    assert main(["eval", "--embeddings", str(tmp_path / "x.zarr"),
                 "--labels", str(tmp_path / "l.tif")]) == 2


def test_cli_embeds_the_synthetic_scene_with_a_tiny_model(tmp_path, capsys):
    rc = main(["eval", "--model", "terrafm-tiny", "--synthetic-size", "224", "--level", "patch",
               "--k", "5", "--block", "2", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
    assert set(rows) == {"knn", "linear", "majority"}
    # land-cover classes are separable in the synthetic reflectance, even through random weights
    assert float(rows["knn"][-3]) > float(rows["majority"][-3]) + 0.2


def test_read_scene_cube_reads_the_scene_through_its_stac_items(synthetic_scene):
    from xterrafm.eval.report import read_scene_cube

    cube = read_scene_cube(synthetic_scene, "s2_l2a")
    assert cube.dims == ("time", "band", "y", "x") and cube.chunks is not None
    assert cube.odc.geobox == synthetic_scene.geobox
    assert cube.attrs["modality"] == "s2_l2a" and cube.dtype == np.float32
    t = 1
    with rasterio.open(synthetic_scene.band_paths["s2_l2a"][t]["B04"]) as src:
        dn = src.read(1).astype(np.float32)  # 10 m: the grid of the cube
    expected = np.where(dn == 0, np.nan, (dn - 1000.0) / 10000.0)  # baseline >= 04.00
    got = cube.isel(time=t).sel(band="B04").values
    np.testing.assert_allclose(got, expected, atol=1e-6, equal_nan=True)
    assert np.isnan(got).any() and np.isfinite(got).mean() > 0.5  # the orbit-edge wedge
    s1 = read_scene_cube(synthetic_scene, "s1")
    with rasterio.open(synthetic_scene.band_paths["s1"][0]["VV"]) as src:
        np.testing.assert_array_equal(s1.isel(time=0).sel(band="VV").values, src.read(1))
    with pytest.raises(ValueError, match="no 's2_l1c_x' items"):
        read_scene_cube(synthetic_scene, "s2_l1c_x")


def _write_raster(path, values, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=values.shape[1], height=values.shape[0],
                       count=1, dtype=values.dtype, crs=CRS,
                       transform=from_origin(600_000.0, 5_100_000.0, 10, 10),
                       nodata=nodata) as dst:
        dst.write(values, 1)


@pytest.mark.parametrize("kind", ["elevation", "reflectance"])
def test_cli_refuses_a_continuous_raster_as_labels(tmp_path, capsys, kind):
    _, _, labels, feats = _grid_samples()
    store, _ = _write_inputs(tmp_path, feats, labels)
    rng = np.random.default_rng(0)
    if kind == "elevation":  # integer metres: 1 286 distinct "classes"
        values = (200 + np.arange(96 * 96).reshape(96, 96) % 1286).astype(np.uint16)
        expect = "1286 distinct values"
    else:  # float reflectance
        values = rng.uniform(0.0, 0.5, size=(96, 96)).astype(np.float32)
        expect = "integer class codes"
    raster = tmp_path / f"{kind}.tif"
    _write_raster(raster, values)
    assert main(["eval", "--embeddings", str(store), "--labels", str(raster)]) == 2
    err = capsys.readouterr().err
    assert expect in err and str(raster) in err
    # a class map with a legend that large is accepted when asked for
    if kind == "elevation":
        assert main(["eval", "--embeddings", str(store), "--labels", str(raster),
                     "--max-classes", "2000", "--no-linear", "--k", "1"]) == 0
