"""Modalities and band specifications of TerraFM inputs.

TerraFM takes three modalities, each with a fixed band order (see
``shared/reference/terrafm_model.md``). This module is the one place that knows them: band
names in TerraFM order, native resolutions in metres, and the aliases that public STAC catalogs
use for the same bands (``B02`` / ``blue`` / ``B2``, ``VV`` / ``vv``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "MODALITIES",
    "S1",
    "S2_L1C",
    "S2_L2A",
    "BandSpec",
    "ModalitySpec",
    "band_names",
    "check_modality",
    "get_modality",
    "resolve_band",
]


@dataclass(frozen=True)
class BandSpec:
    """One input band.

    Attributes
    ----------
    name : str
        Canonical name used in xterrafm cubes (``"B02"``, ``"VV"``).
    resolution : float
        Native ground sampling distance in metres.
    aliases : tuple of str
        Other names public catalogs use for this band: asset keys, ``eo:bands`` names,
        common names. Matched case-insensitively.
    wavelength_um : float or None
        Centre wavelength in micrometres (optical bands only).
    """

    name: str
    resolution: float
    aliases: tuple[str, ...] = ()
    wavelength_um: float | None = None

    def matches(self, key: str) -> bool:
        """Whether ``key`` names this band (case-insensitive, canonical name or alias)."""
        k = key.strip().lower()
        return k == self.name.lower() or k in {a.lower() for a in self.aliases}


@dataclass(frozen=True)
class ModalitySpec:
    """A TerraFM input modality.

    Attributes
    ----------
    name : str
        ``"s1"``, ``"s2_l1c"`` or ``"s2_l2a"``: the key used by the model.
    bands : tuple of BandSpec
        Bands in TerraFM channel order.
    units : str
        Physical units the readers deliver: ``"reflectance"`` (S2, unitless 0..1+)
        or ``"linear_power"`` (S1 gamma0/sigma0, linear scale).
    description : str
        Human-readable description.
    """

    name: str
    bands: tuple[BandSpec, ...]
    units: str
    description: str = ""
    extra_assets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def band_names(self) -> list[str]:
        """Canonical band names in TerraFM order."""
        return [b.name for b in self.bands]

    @property
    def n_bands(self) -> int:
        """Number of input channels the model stem expects."""
        return len(self.bands)

    def band(self, name: str) -> BandSpec:
        """The band spec for a canonical name or alias; ``KeyError`` naming the band if unknown."""
        for b in self.bands:
            if b.matches(name):
                return b
        raise KeyError(f"{name!r} is not a band of modality {self.name!r}; bands are {self.band_names}")


def _s2_bands() -> tuple[BandSpec, ...]:
    # (name, resolution m, aliases incl. Earth Search asset keys / common names, wavelength)
    table = [
        ("B01", 60, ("B1", "coastal", "coastal_aerosol"), 0.443),
        ("B02", 10, ("B2", "blue"), 0.490),
        ("B03", 10, ("B3", "green"), 0.560),
        ("B04", 10, ("B4", "red"), 0.665),
        ("B05", 20, ("B5", "rededge1"), 0.705),
        ("B06", 20, ("B6", "rededge2"), 0.740),
        ("B07", 20, ("B7", "rededge3"), 0.783),
        ("B08", 10, ("B8", "nir"), 0.842),
        ("B8A", 20, ("B08A", "nir08", "narrow_nir"), 0.865),
        ("B09", 60, ("B9", "nir09", "water_vapour", "water_vapor"), 0.945),
        ("B11", 20, ("swir16", "swir1"), 1.610),
        ("B12", 20, ("swir22", "swir2"), 2.190),
    ]
    return tuple(BandSpec(n, float(r), a, w) for n, r, a, w in table)


S2_L2A = ModalitySpec(
    name="s2_l2a",
    bands=_s2_bands(),
    units="reflectance",
    description="Sentinel-2 L2A surface reflectance (B10 dropped)",
    extra_assets={"SCL": ("SCL", "scl", "scene_classification")},
)
S2_L1C = ModalitySpec(
    name="s2_l1c",
    bands=_s2_bands(),
    units="reflectance",
    description="Sentinel-2 L1C top-of-atmosphere reflectance (B10 dropped)",
)
S1 = ModalitySpec(
    name="s1",
    bands=(
        BandSpec("VV", 10.0, ("vv", "sigma0_vv", "gamma0_vv")),
        BandSpec("VH", 10.0, ("vh", "sigma0_vh", "gamma0_vh")),
    ),
    units="linear_power",
    description="Sentinel-1 RTC backscatter VV, VH (linear power)",
)

#: All modalities by name, in the order the model's stems are listed.
MODALITIES: dict[str, ModalitySpec] = {m.name: m for m in (S1, S2_L1C, S2_L2A)}

_MODALITY_ALIASES = {
    "sentinel-1": "s1", "sentinel1": "s1", "s1_rtc": "s1", "s1-rtc": "s1",
    "s2": "s2_l2a", "l2a": "s2_l2a", "s2-l2a": "s2_l2a", "sentinel-2-l2a": "s2_l2a",
    "l1c": "s2_l1c", "s2-l1c": "s2_l1c", "sentinel-2-l1c": "s2_l1c",
}


def check_modality(modality: str) -> str:
    """Return the canonical modality name, or raise ``ValueError`` naming the known ones."""
    if not isinstance(modality, str):
        raise ValueError(f"modality must be a string, one of {list(MODALITIES)}; got {modality!r}")
    key = modality.strip().lower()
    key = _MODALITY_ALIASES.get(key, key)
    if key not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {list(MODALITIES)}")
    return key


def get_modality(modality: str) -> ModalitySpec:
    """The :class:`ModalitySpec` for a modality name (aliases such as ``"sentinel-1"`` accepted)."""
    return MODALITIES[check_modality(modality)]


def band_names(modality: str) -> list[str]:
    """Canonical band names of ``modality`` in TerraFM channel order."""
    return get_modality(modality).band_names


def resolve_band(modality: str, candidates: Iterable[str]) -> dict[str, str]:
    """Map each band of ``modality`` to the first of ``candidates`` that names it.

    Parameters
    ----------
    modality : str
        Modality name.
    candidates : iterable of str
        Names found in a source (asset keys, ``eo:bands`` names, common names, variable names).

    Returns
    -------
    dict
        ``{canonical band name: candidate}`` for every band found. Bands not found are absent;
        callers decide whether that is an error.
    """
    spec = get_modality(modality)
    cands = list(candidates)
    out: dict[str, str] = {}
    for b in spec.bands:
        for c in cands:
            if b.matches(c):
                out[b.name] = c
                break
    return out
