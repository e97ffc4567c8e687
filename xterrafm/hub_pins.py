"""Pins of the published TerraFM weights: which repository, file, revision and SHA-256.

:data:`PUBLISHED` pins each variant to a Hugging Face repository, a file and, once known, a
revision and the file's SHA-256 (not known for TerraFM-B: None, not guessed; docs/weights.md).
:func:`published_weights` applies the ``XTERRAFM_PUBLISHED_WEIGHTS`` override (JSON text or a
JSON file path: ``{"terrafm-b": {"revision": "<commit>", "sha256": "<hex>"}}``; fields
``repo_id``, ``filename``, ``revision``, ``sha256``; new variants allowed), read on every call in
every process, so Dask workers started in the same environment see it too.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from xterrafm.errors import UsageError, WeightsError

__all__ = ["DEFAULT_VARIANT", "OVERRIDE_ENV", "PUBLISHED", "PublishedWeights", "checked_pin", "pins_for",
           "published_weights"]

#: Environment variable holding pin overrides (JSON text or the path of a JSON file).
OVERRIDE_ENV = "XTERRAFM_PUBLISHED_WEIGHTS"
#: Variant that ``weights="hf"`` means when no model is named.
DEFAULT_VARIANT = "terrafm-b"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PublishedWeights:
    """Where one variant's published weights are, and what they must hash to.

    Attributes
    ----------
    variant : str
        Model variant the file fits (``"terrafm-b"``).
    repo_id : str
        Hugging Face model repository (``"owner/name"``).
    filename : str
        File in the repository (``.pth`` as published, or ``.safetensors``).
    revision : str or None
        Commit (40 hex digits), branch or tag to download; None: the repository's ``main``.
        A commit pins the file: downloads ask for it, and cached files of other commits are
        refused.
    sha256 : str or None
        SHA-256 (hex) of the file's bytes; None: checked only against the SHA-256 the hub
        declares for the file.
    """

    variant: str
    repo_id: str
    filename: str
    revision: str | None = None
    sha256: str | None = None


#: The published files. TerraFM-B.pth's revision and SHA-256 are not in the reference material:
#: None (unpinned), not guessed.
PUBLISHED: dict[str, PublishedWeights] = {
    "terrafm-b": PublishedWeights("terrafm-b", "MBZUAI/TerraFM", "TerraFM-B.pth"),
}


def _read_overrides() -> dict[str, dict[str, Any]]:
    text = os.environ.get(OVERRIDE_ENV, "").strip()
    if not text:
        return {}
    origin = f"${OVERRIDE_ENV}"
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text()
        except OSError as err:
            raise UsageError(f"{origin} names {text!r}, which cannot be read: {err}") from None
        origin = f"{origin} file {os.environ[OVERRIDE_ENV]!r}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{origin} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(f"{origin} must map variant names to objects of pin fields")
    allowed = {f.name for f in fields(PublishedWeights)} - {"variant"}
    for variant, entry in data.items():
        unknown = set(entry) - allowed
        if unknown:
            raise UsageError(f"{origin}: {variant!r} has unknown fields {sorted(unknown)}; "
                             f"allowed: {sorted(allowed)}")
    return data


def checked_pin(pin: PublishedWeights, origin: str) -> PublishedWeights:
    if not isinstance(pin.repo_id, str) or pin.repo_id.count("/") != 1 or "--" in pin.repo_id:
        raise UsageError(f"{origin}: repo_id must look like 'owner/name'; got {pin.repo_id!r}")
    if not isinstance(pin.filename, str) or not pin.filename or ".." in pin.filename.split("/"):
        raise UsageError(f"{origin}: filename must be a file in the repository; got "
                         f"{pin.filename!r}")
    if pin.sha256 is not None and not (isinstance(pin.sha256, str)
                                       and _SHA256.fullmatch(pin.sha256.lower())):
        raise UsageError(f"{origin}: sha256 must be 64 hex digits; got {pin.sha256!r}")
    if pin.revision is not None and (not isinstance(pin.revision, str) or not pin.revision):
        raise UsageError(f"{origin}: revision must be a commit, branch or tag; got "
                         f"{pin.revision!r}")
    if pin.sha256 is not None:
        pin = replace(pin, sha256=pin.sha256.lower())
    return pin


def published_weights(variant: str = DEFAULT_VARIANT) -> PublishedWeights:
    """The pin of ``variant``'s published weights, with the environment's overrides applied.

    Raises
    ------
    WeightsError
        ``variant`` has no published weights.
    UsageError
        ``XTERRAFM_PUBLISHED_WEIGHTS`` is malformed.
    """
    overrides = _read_overrides()
    base = PUBLISHED.get(variant)
    entry = overrides.get(variant)
    if base is None and entry is None:
        known = sorted({*PUBLISHED, *overrides})
        raise WeightsError(f"no published weights for {variant!r}; published: {known}")
    if base is None:
        missing = {"repo_id", "filename"} - set(entry)
        if missing:
            raise UsageError(f"${OVERRIDE_ENV}: new variant {variant!r} needs "
                             f"{sorted(missing)}")
        return checked_pin(PublishedWeights(variant=variant, **entry), f"${OVERRIDE_ENV}")
    if entry:
        return checked_pin(replace(base, **entry), f"${OVERRIDE_ENV}")
    return base


def pins_for(repo_id: str, filename: str) -> list[PublishedWeights]:
    names = {*PUBLISHED, *_read_overrides()}
    pins = [published_weights(v) for v in sorted(names)]
    return [p for p in pins if p.repo_id == repo_id and p.filename == filename]
