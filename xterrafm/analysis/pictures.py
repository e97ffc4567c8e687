"""Geo-referenced pictures of cubes and embeddings (matplotlib: the ``plot`` extra).

* :func:`plot_pca` — the first three principal components of an embedding cube as RGB
  (:func:`xterrafm.pca.pca_rgb`, the same colouring as the CLI preview), on the cube's
  coordinates;
* :func:`plot_true_colour` — the input as people see it: Sentinel-2 red/green/blue
  (B04/B03/B02), Sentinel-1 as VV, VH, VV/VH false colour in dB;
* :func:`plot_map` — a similarity or change map with a colour bar;
* :func:`plot_side_by_side` — input and embeddings next to each other on the same extent.

Every picture draws its axes in the cube's CRS (metres for UTM) and marks no-data cells so
they cannot be mistaken for data: a magenta and white hatch (:func:`xterrafm.pca.hatch_nodata`)
in RGB pictures, magenta in colour-mapped ones (whose colour maps hold no magenta), each with a
"no data" legend entry.
"""

from __future__ import annotations

from typing import Any

from xterrafm._imports import import_gate
from xterrafm.analysis.similarity_map import EMBED_DIM, as_embeddings
from xterrafm.errors import InputError, UsageError
from xterrafm.pca import NODATA_RGB, hatch_nodata, pca_rgb

with import_gate():
    import numpy as np
    import xarray as xr

__all__ = ["plot_map", "plot_pca", "plot_side_by_side", "plot_true_colour"]

#: Upscaling of RGB pictures: enough pixels per cell to see the no-data hatch.
_MIN_PIXELS = 512


def _pyplot() -> Any:
    try:
        with import_gate():
            import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("pictures need matplotlib: pip install 'xterrafm[plot]'") from err
    return plt


def _one_date(obj: xr.DataArray, time: Any) -> xr.DataArray:
    if "time" not in obj.dims:
        return obj
    if time is None:
        if obj.sizes["time"] != 1:
            raise UsageError(f"the cube has {obj.sizes['time']} dates; pass time= (one of "
                             f"{[str(t)[:10] for t in obj['time'].values]})")
        return obj.isel(time=0)
    try:
        return obj.sel(time=time, method="nearest") if not isinstance(time, int) \
            else obj.isel(time=time)
    except (KeyError, TypeError, ValueError) as err:
        raise UsageError(f"time={time!r}: {err}") from None


def _extent(obj: xr.DataArray) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of the cells' outer edges, from their centre coordinates."""
    x, y = np.asarray(obj["x"].values, float), np.asarray(obj["y"].values, float)
    dx = float(np.abs(np.diff(x)).min()) if x.size > 1 else 1.0
    dy = float(np.abs(np.diff(y)).min()) if y.size > 1 else 1.0
    return (x.min() - dx / 2, x.max() + dx / 2, y.min() - dy / 2, y.max() + dy / 2)


def _crs_name(obj: xr.DataArray) -> str:
    try:
        crs = obj.odc.crs
    except Exception:  # noqa: BLE001 - a label only
        crs = None
    if crs is None:
        return ""
    return f"EPSG:{crs.epsg}" if crs.epsg is not None else "projected CRS"


def _frame(ax: Any, obj: xr.DataArray, title: str | None) -> None:
    crs = _crs_name(obj)
    ax.set_xlabel(f"x [m] ({crs})" if crs else "x")
    ax.set_ylabel(f"y [m] ({crs})" if crs else "y")
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(axis="x", labelrotation=30)
    if title:
        ax.set_title(title)


def _nodata_legend(ax: Any, hatched: bool, extra: tuple = ()) -> None:
    with import_gate():
        from matplotlib.patches import Patch

    colour = tuple(c / 255 for c in NODATA_RGB)
    patch = Patch(facecolor=colour, edgecolor="white", hatch="//" if hatched else None,
                  label="no data")
    ax.legend(handles=[*extra, patch], loc="lower right", fontsize="small", framealpha=0.9)


def _show_rgb(ax: Any, rgb: np.ndarray, obj: xr.DataArray, nodata: bool) -> None:
    top_down = bool(obj["y"].values[0] > obj["y"].values[-1]) if obj.sizes["y"] > 1 else True
    ax.imshow(rgb if top_down else rgb[::-1], extent=_extent(obj), origin="upper",
              interpolation="nearest")
    if nodata:
        _nodata_legend(ax, hatched=True)


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=(5, 5))
    return ax


def plot_pca(emb: Any, *, time: Any = None, ax: Any = None, title: str | None = None) -> Any:
    """The first three principal components of an embedding cube as a geo-referenced picture.

    Parameters
    ----------
    emb : DataArray, Dataset or store path
        Embeddings (computed here: pass a cube small enough to plot).
    time : date or int, optional
        The date to show (needed when the cube has several).
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib Axes
    """
    plt = _pyplot()  # noqa: F841  (fail early without matplotlib)
    emb = _one_date(as_embeddings(emb), time)
    values = np.asarray(emb.transpose(EMBED_DIM, "y", "x").values, dtype=np.float32)
    up = max(1, -(-_MIN_PIXELS // max(values.shape[1:])))
    rgb = pca_rgb(values, upscale=up)
    ax = _axes(ax)
    _show_rgb(ax, rgb, emb, nodata=not np.isfinite(values).all())
    _frame(ax, emb, title if title is not None else "embeddings: PCA 1-3 as RGB")
    return ax


def _stretch(bands: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    finite = bands[np.isfinite(bands)]
    if finite.size == 0:
        return np.zeros_like(bands)
    lo, hi = np.percentile(finite, percentiles)
    return np.clip((bands - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)


def plot_true_colour(cube: Any, *, time: Any = None, ax: Any = None, title: str | None = None,
                     percentiles: tuple[float, float] = (2.0, 98.0)) -> Any:
    """The input cube as people see it, on its coordinates.

    Sentinel-2: B04, B03, B02 as red, green, blue. Sentinel-1: VV, VH and VV/VH (in dB) as
    red, green, blue. Stretched between the given percentiles of the valid pixels; pixels
    without data carry the magenta/white hatch.

    Parameters
    ----------
    cube : DataArray
        ``(time, band, y, x)`` or ``(band, y, x)`` with ``attrs["modality"]`` (what
        :mod:`xterrafm.io` returns).
    time : date or int, optional
    ax : matplotlib Axes, optional
    title : str, optional
    percentiles : (float, float)

    Returns
    -------
    matplotlib Axes
    """
    _pyplot()
    if not isinstance(cube, xr.DataArray) or "band" not in cube.dims:
        raise InputError("plot_true_colour needs a DataArray with a 'band' dimension")
    modality = str(cube.attrs.get("modality", ""))
    one = _one_date(cube, time)
    bands = [str(b) for b in one["band"].values]
    if modality.startswith("s2") or {"B04", "B03", "B02"} <= set(bands):
        rgb = np.stack([one.sel(band=b).values for b in ("B04", "B03", "B02")], axis=-1)
        rgb = _stretch(rgb.astype(np.float64), percentiles)
        label = "Sentinel-2 true colour (B04, B03, B02)"
    elif modality == "s1" or {"VV", "VH"} <= set(bands):
        vv, vh = (10 * np.log10(np.clip(one.sel(band=b).values.astype(np.float64), 1e-6, None))
                  for b in ("VV", "VH"))
        chans = [_stretch(c, percentiles) for c in (vv, vh, vv - vh)]
        rgb = np.stack(chans, axis=-1)
        label = "Sentinel-1 VV, VH, VV/VH (dB)"
    else:
        raise InputError(f"cannot tell how to show bands {bands} (modality {modality!r})")
    nodata = ~np.isfinite(rgb).all(axis=-1)
    img = hatch_nodata((np.nan_to_num(rgb) * 255).round().astype(np.uint8), nodata)
    ax = _axes(ax)
    _show_rgb(ax, img, one, nodata=bool(nodata.any()))
    _frame(ax, one, title if title is not None else label)
    return ax


def plot_map(values: Any, *, time: Any = None, ax: Any = None, title: str | None = None,
             cmap: str | None = None, vmin: float | None = None, vmax: float | None = None,
             marker: tuple[float, float] | None = None) -> Any:
    """A similarity or change map with a colour bar, on its coordinates.

    Parameters
    ----------
    values : DataArray
        ``(y, x)`` or ``(time, y, x)`` map (:func:`~xterrafm.analysis.similarity_map.similarity`,
        :func:`~xterrafm.analysis.change_map.change`).
    time : date or int, optional
    ax : matplotlib Axes, optional
    title : str, optional
    cmap : str, optional
        Default ``"viridis"`` (no magenta in it: magenta marks no data).
    vmin, vmax : float, optional
        Colour range (default: the data's).
    marker : (x, y), optional
        A point to mark (the query), in the map's CRS; default: the ``query_x``/``query_y``
        attrs when present.

    Returns
    -------
    matplotlib Axes
    """
    plt = _pyplot()
    if not isinstance(values, xr.DataArray) or not {"y", "x"} <= set(values.dims):
        raise InputError("plot_map needs a DataArray with y and x dimensions")
    one = _one_date(values, time).transpose("y", "x")
    data = np.asarray(one.values, dtype=np.float64)
    colours = plt.get_cmap(cmap or "viridis").with_extremes(
        bad=tuple(c / 255 for c in NODATA_RGB))
    ax = _axes(ax)
    top_down = bool(one["y"].values[0] > one["y"].values[-1]) if one.sizes["y"] > 1 else True
    shown = np.ma.masked_invalid(data if top_down else data[::-1])
    image = ax.imshow(shown, extent=_extent(one), origin="upper", interpolation="nearest",
                      cmap=colours, vmin=vmin, vmax=vmax)
    plt.colorbar(image, ax=ax, shrink=0.8, label=str(values.attrs.get("long_name", values.name)))
    if marker is None and "query_x" in values.attrs and "query_y" in values.attrs:
        marker = (values.attrs["query_x"], values.attrs["query_y"])
    extra: tuple = ()
    if marker is not None:
        extra = tuple(ax.plot([marker[0]], [marker[1]], marker="+", color="red", ls="none",
                              markersize=14, mew=2, label="query"))
    if np.isnan(data).any():
        _nodata_legend(ax, hatched=False, extra=extra)
    elif extra:
        ax.legend(handles=list(extra), loc="lower right", fontsize="small")
    _frame(ax, one, title if title is not None else str(values.name))
    return ax


def plot_side_by_side(cube: Any, emb: Any, *, time: Any = None, figsize: tuple = (11, 5)
                      ) -> Any:
    """The input in true colour and its embeddings' PCA picture, side by side, same extent.

    Returns
    -------
    matplotlib Figure
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=figsize, sharex=True, sharey=True,
                                      constrained_layout=True)
    plot_true_colour(cube, time=time, ax=left)
    plot_pca(emb, time=time, ax=right)
    return fig
