"""The rules of a window layout (tile, stride, patch size, level), with the standard library only.

Stated once here, checked where settings are read (before any work starts, naming the model)
and by :class:`xterrafm.embedding.windows.AxisWindows`.
"""

from __future__ import annotations

__all__ = ["LEVELS", "layout_problem"]

#: Output levels: one CLS embedding per window (``"tile"``), or one token per patch of the
#: model (``"patch"``).
LEVELS: tuple[str, ...] = ("tile", "patch")


def layout_problem(tile: int, stride: int | None, patch: int, level: str,
                   model: str | None = None) -> str | None:
    """What is wrong with a window layout, in words, or ``None`` when it can be embedded.

    Parameters
    ----------
    tile : int
        Window side in pixels: a positive multiple of ``patch``.
    stride : int or None
        Step between window starts in pixels, ``1 <= stride <= tile`` (a larger step leaves
        gaps); at the patch level also a multiple of ``patch``. ``None``: not given (``tile``).
    patch : int
        Patch size of the model in pixels.
    level : str
        One of :data:`LEVELS`: ``"tile"`` or ``"patch"``.
    model : str, optional
        Model name, named in the message when given.
    """
    if level not in LEVELS:
        return f"level must be one of {list(LEVELS)}; got {level!r}"
    of = f"the {patch} px patch size" + (f" of {model}" if model else "")
    if tile < patch or tile % patch:
        return f"tile must be a positive multiple of {of}; got tile={tile}"
    if stride is None:
        return None
    if not 1 <= stride <= tile:
        return (f"stride must be between 1 and tile={tile} px (a larger stride leaves gaps "
                f"between windows); got stride={stride}")
    if level == "patch" and stride % patch:
        return (f"at the patch level stride must be a multiple of {of}, so that patches of "
                f"overlapping windows coincide; got stride={stride}")
    return None
