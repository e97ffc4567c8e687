"""Model outputs are checked before they are stored: NaN from the model is an error, not "empty".

A window reaches the model only when enough of its pixels are valid, and invalid pixels are
filled before the forward pass (:mod:`xterrafm.embedding.blocks`), so a NaN or infinite value in
an output can only come from the model itself: corrupted weights, or an overflow in reduced
precision. :func:`check_model_output` raises :class:`~xterrafm.errors.ModelOutputError` naming
the windows, instead of letting them pass for windows skipped as empty.
"""

from __future__ import annotations

from xterrafm._imports import import_gate
from xterrafm.embedding.windows import AxisWindows, BlockSpan
from xterrafm.errors import ModelOutputError

with import_gate():
    import numpy as np

__all__ = ["check_model_output"]

#: Windows named in the message (the count is always given).
_NAMED = 5


def check_model_output(result: np.ndarray, windows: np.ndarray, *, y: AxisWindows,
                       x: AxisWindows, y_span: BlockSpan, x_span: BlockSpan) -> None:
    """Raise when the model returned non-finite values for any window of a batch.

    Parameters
    ----------
    result : ndarray, shape (B, ...)
        One forward pass: CLS embeddings ``(B, D)`` or patch tokens ``(B, D, h, w)``.
    windows : ndarray of int, shape (B, 3)
        ``(date, window row, window column)`` of each batch entry, the rows and columns
        counted from the block's first window (``y_span.win_start``, ``x_span.win_start``).
    y, x : AxisWindows
        Window layouts of the scene.
    y_span, x_span : BlockSpan
        The block the batch belongs to.

    Raises
    ------
    ModelOutputError
        Some output holds NaN or an infinity; the message names the windows (date index,
        window row and column in the scene, and their input pixel ranges).
    """
    finite = np.isfinite(result.reshape(len(result), -1)).all(axis=1)
    if finite.all():
        return
    named = []
    for t, jy, jx in windows[~finite][:_NAMED]:
        row, col = int(y_span.win_start + jy), int(x_span.win_start + jx)
        named.append(f"date {int(t)} window (row {row}, col {col}) at pixels "
                     f"y {row * y.stride}-{row * y.stride + y.tile}, "
                     f"x {col * x.stride}-{col * x.stride + x.tile}")
    more = int((~finite).sum()) - len(named)
    raise ModelOutputError(
        f"the model returned NaN or infinite values for {int((~finite).sum())} window(s) whose "
        "inputs were valid: " + "; ".join(named) + (f"; and {more} more" if more > 0 else "")
        + ". Check the weights file (a corrupted tensor gives NaN everywhere) or use "
        "precision='fp32' (an overflow in reduced precision gives infinities).")
