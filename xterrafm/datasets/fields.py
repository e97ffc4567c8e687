"""Smooth random fields: the building block of synthetic land cover, texture and clouds.

All fields here are deterministic functions of a :class:`numpy.random.Generator`; the
generator's seed decides the pattern. Fields are built on a coarse grid, smoothed with a
Gaussian kernel in the Fourier domain and interpolated bilinearly to full resolution, so that
scenes of several thousand pixels per side stay cheap to make.
"""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import numpy as np

__all__ = ["smooth_field", "upsample_bilinear"]


def _gaussian_smooth_periodic(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a 2-D array with periodic boundaries (FFT), sigma in pixels."""
    ny, nx = a.shape
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    return np.fft.irfft2(np.fft.rfft2(a) * kernel, s=a.shape)


def upsample_bilinear(a: np.ndarray, shape: tuple[int, int], factor: float) -> np.ndarray:
    """Bilinear interpolation of a coarse 2-D grid onto a finer one.

    Parameters
    ----------
    a : numpy.ndarray, shape (cy, cx)
        Coarse grid; coarse pixel ``(i, j)`` has its centre at fine coordinate
        ``((i + 0.5) * factor, (j + 0.5) * factor)``.
    shape : (int, int)
        ``(height, width)`` of the fine grid in pixels.
    factor : float
        Fine pixels per coarse pixel.

    Returns
    -------
    numpy.ndarray, shape ``shape``, float32
    """
    h, w = shape
    cy, cx = a.shape

    def _weights(n: int, nc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n) + 0.5) / factor - 0.5
        pos = np.clip(pos, 0.0, nc - 1.0)
        i0 = np.floor(pos).astype(np.intp)
        i1 = np.minimum(i0 + 1, nc - 1)
        return i0, i1, (pos - i0).astype(np.float32)

    y0, y1, wy = _weights(h, cy)
    x0, x1, wx = _weights(w, cx)
    a = a.astype(np.float32, copy=False)
    rows = a[:, x0] * (1 - wx) + a[:, x1] * wx  # (cy, w): interpolate along x first
    out = rows[y0]
    out *= (1 - wy)[:, None]
    out += rows[y1] * wy[:, None]
    return out


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, int], sigma: float, coarse: int | None = None
) -> np.ndarray:
    """A standardised smooth Gaussian random field.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the field is a deterministic function of its state.
    shape : (int, int)
        ``(height, width)`` in pixels.
    sigma : float
        Correlation length (Gaussian kernel sigma) in pixels of ``shape``.
    coarse : int, optional
        The field is drawn on a grid ``coarse`` times coarser and interpolated; kept well
        below ``sigma`` (default ``sigma / 4``, at least 1).

    Returns
    -------
    numpy.ndarray, shape ``shape``, float32
        Zero mean, unit standard deviation (over the drawn grid).
    """
    h, w = shape
    if coarse is None:
        coarse = int(sigma // 4)
    coarse = max(1, min(int(coarse), int(sigma // 2)))
    # pad by a few sigma so the periodic FFT blur does not wrap opposite edges together
    pad = int(np.ceil(3 * sigma / coarse))
    cy, cx = -(-h // coarse) + 2 * pad, -(-w // coarse) + 2 * pad
    noise = rng.standard_normal((cy, cx))
    smooth = _gaussian_smooth_periodic(noise, sigma / coarse)
    smooth = (smooth - smooth.mean()) / (smooth.std() + 1e-12)
    full = upsample_bilinear(smooth, (h + 2 * pad * coarse, w + 2 * pad * coarse), coarse)
    return np.ascontiguousarray(full[pad * coarse : pad * coarse + h, pad * coarse : pad * coarse + w])
