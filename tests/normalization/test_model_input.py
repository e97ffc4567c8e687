"""One normalise-and-fill for every path to the model: inference, training, evaluation chips
and the pretraining evidence give the model the same input for the same partly-missing pixels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from xterrafm.errors import RandomWeightsWarning
from xterrafm.model_input import normalize_and_fill
from xterrafm.normalization import normalize

SIDE = 32


def _pixels() -> np.ndarray:
    """(12, 32, 32) S2 reflectance: a pixel box missing one band, one missing all bands."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0.02, 0.4, size=(12, SIDE, SIDE)).astype(np.float32)
    x[4, 2:6, 3:9] = np.nan      # B05 missing (e.g. the edge of a 20 m band)
    x[0, 20, 20] = np.nan        # B01 missing at one pixel
    x[:, 10:12, 10:14] = np.nan  # every band missing
    return x


def test_the_rule_zeroes_every_band_of_a_partly_missing_pixel():
    x = _pixels()
    filled, valid = normalize_and_fill(x, "s2_l2a")
    assert filled.dtype == np.float32 and np.isfinite(filled).all()
    assert not valid[2:6, 3:9].any() and not valid[20, 20] and not valid[10:12, 10:14].any()
    assert valid.sum() == SIDE * SIDE - 24 - 1 - 8
    assert (filled[:, ~valid] == 0).all()  # all bands, not only the missing one
    np.testing.assert_allclose(filled[:, valid], normalize(x, "s2_l2a")[:, valid], rtol=1e-6)
    none_filled, _ = normalize_and_fill(x, "s2_l2a", None)  # spec None: values kept
    np.testing.assert_array_equal(none_filled[:, valid], x[:, valid])


class _Recorder(torch.nn.Module):
    """The real encoder, recording the tensors it is given."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.embed_dim = model.embed_dim
        self.seen: list[np.ndarray] = []

    def forward(self, x, modality):
        self.seen.append(x.detach().cpu().numpy().copy())
        return self.model(x, modality=modality)


def _inference_input(x: np.ndarray) -> np.ndarray:
    """What embed() gives the model for one 32 px window covering the cube."""
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    import xterrafm
    from xterrafm.embedding import blocks

    gbox = GeoBox.from_bbox((600000, 5100000, 600000 + 10 * SIDE, 5100000 + 10 * SIDE),
                            "EPSG:32632", resolution=10)
    coords = dict(xr_coords(gbox, crs_coord_name="spatial_ref"))
    coords["band"] = xterrafm.bands.band_names("s2_l2a")
    cube = xr.DataArray(x, dims=("band", "y", "x"), coords=coords,
                        attrs={"modality": "s2_l2a"})
    seen: list[np.ndarray] = []
    real = blocks.run_encoder

    def recording(model, batch, modality, level, device):
        seen.append(np.array(batch, copy=True))
        return real(model, batch, modality, level, device)

    blocks.run_encoder = recording
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            xterrafm.embed(cube, model="terrafm-tiny", tile=SIDE, min_valid=0.0,
                           device="cpu").compute(scheduler="synchronous")
    finally:
        blocks.run_encoder = real
    assert len(seen) == 1 and seen[0].shape == (1, 12, SIDE, SIDE)
    return seen[0][0]


def _training_input(x: np.ndarray) -> np.ndarray:
    from xterrafm.data.dataset import TileDataset

    ds = xr.Dataset({"s2_l2a": (("time", "band", "y", "x"), x[None])})
    data = TileDataset(ds, tile_size=SIDE, min_valid_fraction=0.0, sampling="uniform",
                       prefetch=False)
    samples = list(data)
    assert len(samples) == 1
    return samples[0]["inputs"]["s2_l2a"].numpy()


def _chips_input(x: np.ndarray) -> np.ndarray:
    from xterrafm.eval.chips import embed_images
    from xterrafm.weights import load_model

    rec = _Recorder(load_model("terrafm-tiny", seed=1).eval())
    embed_images([x], rec, "s2_l2a", batch_size=1)
    assert len(rec.seen) == 1
    return rec.seen[0][0]


def _evidence_input(x: np.ndarray) -> np.ndarray:
    from xterrafm.data.cube import TrainingCube
    from xterrafm.pretrain.probes import scene_windows

    ds = xr.Dataset({"s2_l2a": (("time", "band", "y", "x"), x[None]),
                     "landcover": (("y", "x"), np.full((SIDE, SIDE), 10, np.uint8))})
    windows = scene_windows(TrainingCube(ds), ["s2_l2a"], window=SIDE)
    assert windows.inputs["s2_l2a"].shape == (1, 12, SIDE, SIDE)
    assert windows.labels.tolist() == [10]
    return windows.inputs["s2_l2a"][0].numpy()


@pytest.mark.timeout(300)
def test_inference_training_chips_and_evidence_give_the_model_the_same_input():
    x = _pixels()
    want, valid = normalize_and_fill(x, "s2_l2a")
    got = {"inference": _inference_input(x), "training": _training_input(x),
           "chips": _chips_input(x), "evidence": _evidence_input(x)}
    for path, value in got.items():
        assert value.shape == want.shape, path
        assert np.isfinite(value).all(), path
        assert (value[:, ~valid] == 0).all(), f"{path}: a partly-missing pixel kept some bands"
        np.testing.assert_array_equal(value, want, err_msg=path)
