"""Band names and their centre wavelengths.

Sentinel-2 bands come in two spellings: Earth Engine's ``B4``/``B8A`` and the file/STAC spelling
``B04``/``B8A``. Both are accepted everywhere; internally a band is known by its *canonical* name
(``B04``, ``B8A``, ``VV``), so matching never depends on the spelling a source used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

#: Sentinel-2 MSI centre wavelengths in micrometres (ESA, as used by DOFA and rs-embed).
SENTINEL2_WAVELENGTHS_UM: dict[str, float] = {
    "B01": 0.443,
    "B02": 0.490,
    "B03": 0.560,
    "B04": 0.665,
    "B05": 0.705,
    "B06": 0.740,
    "B07": 0.783,
    "B08": 0.842,
    "B8A": 0.865,
    "B09": 0.945,
    "B10": 1.375,
    "B11": 1.610,
    "B12": 2.190,
}

SENTINEL1_BANDS = ("VV", "VH")

# Common names used by STAC (Earth Search) for Sentinel-2 assets.
_STAC_COMMON_NAMES = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
}

_S2_PATTERN = re.compile(r"^B0?(\d{1,2})(A?)$")


def canonical_band_name(name: object) -> str:
    """Return the canonical spelling of a band name.

    ``B4``, ``b04`` and ``B04`` all become ``B04``; ``B8a`` becomes ``B8A``; ``vv`` becomes ``VV``;
    STAC common names (``red``, ``nir08``) map to their Sentinel-2 band. Unknown names are returned
    upper-cased and stripped, so they still match themselves.

    Examples
    --------
    >>> canonical_band_name("B4"), canonical_band_name("b8a"), canonical_band_name("vh")
    ('B04', 'B8A', 'VH')
    """
    text = str(name).strip()
    lowered = text.lower()
    if lowered in _STAC_COMMON_NAMES:
        return _STAC_COMMON_NAMES[lowered]
    upper = text.upper()
    match = _S2_PATTERN.match(upper)
    if match:
        number, suffix = match.groups()
        return f"B{int(number):02d}" if not suffix else f"B{int(number)}A"
    return upper


def canonical_band_names(names: Iterable[object]) -> list[str]:
    """Canonical spelling of each name in ``names`` (see :func:`canonical_band_name`)."""
    return [canonical_band_name(n) for n in names]


def find_bands(available: Sequence[object], wanted: Sequence[str]) -> list[int]:
    """Indices into ``available`` of each band in ``wanted``, matched by canonical name.

    Raises ``KeyError`` listing the missing canonical names when some are absent, and ``ValueError`` when
    a wanted band occurs more than once in ``available`` (``B4`` and ``B04`` are one band): taking either
    copy silently could embed the wrong one.
    """
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(canonical_band_names(available)):
        positions.setdefault(name, []).append(i)
    wanted_canonical = canonical_band_names(wanted)
    missing = [w for w in wanted_canonical if w not in positions]
    if missing:
        raise KeyError(missing)
    twice = {w: [str(available[i]) for i in positions[w]] for w in wanted_canonical if len(positions[w]) > 1}
    if twice:
        raise ValueError(
            f"the input has bands {sorted(twice)} more than once ({twice}); drop or rename the copies "
            "so that each band occurs once."
        )
    return [positions[w][0] for w in wanted_canonical]
