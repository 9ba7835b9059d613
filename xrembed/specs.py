"""Request specs compatible with rs-embed: where (BBox, PointBuffer), when (TemporalSpec), from which
sensor (SensorSpec, FetchSpec), and how (OutputSpec, InputPrepSpec).

Each spec is a frozen dataclass that validates itself on construction and raises
:class:`~xrembed.errors.SpecError` naming the fix. Two differences from rs-embed, both deliberate:
``PointBuffer.buffer_m`` is true ground metres (a square in the point's local UTM zone, not Web-Mercator
metres), and ``BBox`` may be given in any CRS (rs-embed accepts EPSG:4326 only).
"""

from __future__ import annotations

import datetime as _dt
import math
import numbers
from dataclasses import dataclass, field

from pyproj import CRS, Transformer

from .errors import SpecError
from .geo import utm_crs  # re-exported: rs-embed users import it from the specs

__all__ = [
    "BBox",
    "PointBuffer",
    "TemporalSpec",
    "SensorSpec",
    "FetchSpec",
    "OutputSpec",
    "InputPrepSpec",
    "utm_crs",
]

COMPOSITES = ("median", "mosaic")
#: Largest ``PointBuffer.buffer_m`` (a 1000 km square): beyond it a UTM zone's square is badly distorted;
#: use a ``BBox`` for larger regions.
MAX_BUFFER_M = 500_000.0


class _Validated:
    """``validate()`` as in rs-embed: xrembed specs check themselves on construction already, so this re-runs
    the same checks (catching a spec altered after construction) and returns the spec, for chaining."""

    def validate(self):
        """Re-check the spec; return it, or raise :class:`~xrembed.errors.SpecError` naming the fix.

        Examples
        --------
        >>> BBox(-9.9, 24.9, -9.5, 25.2).validate()
        BBox(minlon=-9.9, minlat=24.9, maxlon=-9.5, maxlat=25.2, crs='EPSG:4326')
        """
        self.__post_init__()
        return self


def _is_number(value) -> bool:
    """A finite real number (numpy scalars included; ``bool`` is not a coordinate)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _crs(value) -> CRS:
    try:
        return CRS.from_user_input(value)
    except Exception as err:
        raise SpecError(f"crs={value!r} is not a CRS pyproj understands (e.g. 'EPSG:4326').") from err


@dataclass(frozen=True)
class BBox(_Validated):
    """A rectangle ``(minlon, minlat, maxlon, maxlat)``; in EPSG:4326 unless ``crs`` says otherwise.

    Examples
    --------
    >>> BBox(-9.9, 24.9, -9.5, 25.2).bounds_in("EPSG:32629")  # doctest: +ELLIPSIS
    (...)
    """

    minlon: float
    minlat: float
    maxlon: float
    maxlat: float
    crs: str = "EPSG:4326"

    def __post_init__(self) -> None:
        values = (self.minlon, self.minlat, self.maxlon, self.maxlat)
        if not all(_is_number(v) for v in values):
            raise SpecError(
                f"BBox bounds must be finite numbers, got {values}; pass BBox(minlon, minlat, maxlon, maxlat)."
            )
        if self.minlon >= self.maxlon or self.minlat >= self.maxlat:
            raise SpecError(
                f"BBox is inverted or empty: min ({self.minlon}, {self.minlat}) must be below max "
                f"({self.maxlon}, {self.maxlat}); pass BBox(minlon, minlat, maxlon, maxlat)"
                + (" (a box across the antimeridian must be split in two)." if self.minlon > self.maxlon else ".")
            )
        crs = _crs(self.crs)
        if crs.is_geographic and not (
            -180 <= self.minlon and self.maxlon <= 180 and -90 <= self.minlat and self.maxlat <= 90
        ):
            raise SpecError(f"BBox {values} lies outside longitude [-180, 180] / latitude [-90, 90].")

    def bounds_in(self, crs) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` of the smallest rectangle in ``crs`` containing this box."""
        transformer = Transformer.from_crs(_crs(self.crs), _crs(crs), always_xy=True)
        return tuple(transformer.transform_bounds(self.minlon, self.minlat, self.maxlon, self.maxlat, densify_pts=21))

    @property
    def center_lonlat(self) -> tuple[float, float]:
        left, bottom, right, top = self.bounds_in("EPSG:4326")
        return (left + right) / 2, (bottom + top) / 2

    def local_utm(self) -> CRS:
        """The UTM zone of the box's centre, the default grid for fetching imagery over it."""
        return utm_crs(*self.center_lonlat)


@dataclass(frozen=True)
class PointBuffer(_Validated):
    """A square of half-side ``buffer_m`` **ground metres** around (``lon``, ``lat``).

    The square is laid out in the point's UTM zone, so 1000 m is 1000 m on the ground at any latitude
    (rs-embed's squares are Web-Mercator metres, ``1 / cos(lat)`` too large on the ground).

    Examples
    --------
    >>> box = PointBuffer(-9.5, 25.0, 500).bounds_in("EPSG:32629")
    >>> round(box[2] - box[0]), round(box[3] - box[1])
    (1000, 1000)
    """

    lon: float
    lat: float
    buffer_m: float
    crs: str = "EPSG:4326"

    def __post_init__(self) -> None:
        if not (_is_number(self.buffer_m) and self.buffer_m > 0):
            raise SpecError(f"PointBuffer.buffer_m must be a positive number of metres, got {self.buffer_m!r}.")
        if self.buffer_m > MAX_BUFFER_M:
            raise SpecError(
                f"PointBuffer.buffer_m={self.buffer_m!r} is over the maximum of {MAX_BUFFER_M:.0f} m (a half-side; "
                "it is not a diameter); for a larger region use BBox(minlon, minlat, maxlon, maxlat)."
            )
        if _crs(self.crs) != CRS.from_epsg(4326):
            raise SpecError("PointBuffer takes lon/lat in EPSG:4326; use BBox(..., crs=...) for other CRSs.")
        if not (_is_number(self.lon) and _is_number(self.lat) and -180 <= self.lon <= 180 and -90 <= self.lat <= 90):
            raise SpecError(
                f"PointBuffer point ({self.lon!r}, {self.lat!r}) is not a valid longitude/latitude: pass "
                "PointBuffer(lon, lat, buffer_m) with lon in [-180, 180] and lat in [-90, 90] (lon first)."
            )

    def local_utm(self) -> CRS:
        return utm_crs(self.lon, self.lat)

    @property
    def center_lonlat(self) -> tuple[float, float]:
        return self.lon, self.lat

    def bounds_in(self, crs) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in ``crs`` of the ground square (exact in its UTM zone)."""
        utm = self.local_utm()
        x, y = Transformer.from_crs("EPSG:4326", utm, always_xy=True).transform(self.lon, self.lat)
        square = (x - self.buffer_m, y - self.buffer_m, x + self.buffer_m, y + self.buffer_m)
        if _crs(crs) == utm:
            return square
        return tuple(Transformer.from_crs(utm, _crs(crs), always_xy=True).transform_bounds(*square, densify_pts=21))


def _date(value, name: str) -> _dt.date:
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    try:
        return _dt.date.fromisoformat(str(value)[:10])
    except ValueError as err:
        raise SpecError(f"TemporalSpec {name}={value!r} is not an ISO date (YYYY-MM-DD).") from err


@dataclass(frozen=True)
class TemporalSpec(_Validated):
    """A time window: a calendar year or a half-open range ``[start, end)``.

    Examples
    --------
    >>> TemporalSpec.year(2022).interval
    ('2022-01-01', '2023-01-01')
    >>> TemporalSpec.range("2022-06-01", "2022-09-01").interval
    ('2022-06-01', '2022-09-01')
    """

    mode: str
    year: int | None = None
    start: str | None = None
    end: str | None = None

    def __post_init__(self) -> None:
        if self.mode == "year":
            if not isinstance(self.year, int) or not 1900 <= self.year <= 2200:
                raise SpecError(f"TemporalSpec.year needs a four-digit year, got {self.year!r}.")
            object.__setattr__(self, "start", f"{self.year:04d}-01-01")
            object.__setattr__(self, "end", f"{self.year + 1:04d}-01-01")
        elif self.mode == "range":
            start, end = _date(self.start, "start"), _date(self.end, "end")
            if end <= start:
                raise SpecError(f"TemporalSpec range ends ({end}) before or at its start ({start}); end is exclusive.")
            object.__setattr__(self, "start", start.isoformat())
            object.__setattr__(self, "end", end.isoformat())
        else:
            raise SpecError(f"TemporalSpec mode must be 'year' or 'range', got {self.mode!r}.")

    @classmethod
    def range(cls, start, end) -> TemporalSpec:
        """The half-open window ``[start, end)`` (ISO dates or ``datetime.date``)."""
        return cls("range", start=start, end=end)

    @property
    def interval(self) -> tuple[str, str]:
        """``(start, end)`` as ISO dates, end exclusive."""
        return self.start, self.end


def _temporal_year(cls, year: int) -> TemporalSpec:
    """The calendar year ``year``: ``[year-01-01, (year+1)-01-01)``."""
    return cls("year", year=year)


# rs-embed spells the constructor like the field (``TemporalSpec.year(2022)`` and ``spec.year``). Attached
# after the dataclass is built, so the field keeps its default and instances still read their own year.
TemporalSpec.year = classmethod(_temporal_year)


def _check_scale(value, name: str) -> None:
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise SpecError(f"{name} must be a positive number of metres, got {value!r}.")


def _check_cloudy(value, name: str) -> None:
    if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 100):
        raise SpecError(f"{name} must be a percentage in [0, 100], got {value!r}.")


def _check_composite(value, name: str, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if value not in COMPOSITES:
        raise SpecError(f"{name}={value!r} is not one of {list(COMPOSITES)}" + (" or None." if allow_none else "."))


@dataclass(frozen=True)
class SensorSpec(_Validated):
    """Which image collection and bands to fetch, at what scale, and how to composite (rs-embed fields)."""

    collection: str
    bands: tuple[str, ...]
    scale_m: float = 10
    cloudy_pct: float | None = 30
    fill_value: float = 0.0
    composite: str | None = "median"
    modality: str | None = None
    orbit: str | None = None
    use_float_linear: bool = True
    s1_require_iw: bool = True
    s1_relax_iw_on_empty: bool = True
    check_input: bool = False
    check_raise: bool = True
    check_save_dir: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.collection, str) or not self.collection:
            raise SpecError("SensorSpec.collection must name an image collection, e.g. 'COPERNICUS/S2_SR_HARMONIZED'.")
        bands = (self.bands,) if isinstance(self.bands, str) else tuple(self.bands)
        if not bands or not all(isinstance(b, str) and b for b in bands):
            raise SpecError(f"SensorSpec.bands must be a non-empty list of band names, got {self.bands!r}.")
        object.__setattr__(self, "bands", bands)
        _check_scale(self.scale_m, "SensorSpec.scale_m")
        _check_cloudy(self.cloudy_pct, "SensorSpec.cloudy_pct")
        _check_composite(self.composite, "SensorSpec.composite", allow_none=True)
        if self.orbit is not None and str(self.orbit).upper() not in ("ASCENDING", "DESCENDING"):
            raise SpecError(f"SensorSpec.orbit must be 'ASCENDING', 'DESCENDING' or None, got {self.orbit!r}.")


@dataclass(frozen=True)
class FetchSpec(_Validated):
    """Overrides on a model's default sensor (cannot be combined with a full ``SensorSpec``)."""

    scale_m: float | None = None
    cloudy_pct: float | None = None
    fill_value: float | None = None
    composite: str | None = None

    def __post_init__(self) -> None:
        _check_scale(self.scale_m, "FetchSpec.scale_m")
        _check_cloudy(self.cloudy_pct, "FetchSpec.cloudy_pct")
        _check_composite(self.composite, "FetchSpec.composite", allow_none=True)


@dataclass(frozen=True)
class OutputSpec(_Validated):
    """``grid`` (a georeferenced token grid) or ``pooled`` (one vector)."""

    mode: str = "grid"
    pooling: str = "mean"
    grid_orientation: str = "north_up"

    def __post_init__(self) -> None:
        if self.mode not in ("grid", "pooled"):
            raise SpecError(f"OutputSpec.mode must be 'grid' or 'pooled', got {self.mode!r}.")
        if self.pooling not in ("mean", "max"):
            raise SpecError(f"OutputSpec.pooling must be 'mean' or 'max', got {self.pooling!r}.")
        if self.grid_orientation not in ("north_up", "native"):
            raise SpecError(f"OutputSpec.grid_orientation must be 'north_up' or 'native', got {self.grid_orientation!r}.")

    @classmethod
    def grid(cls, grid_orientation: str = "north_up", **kwargs) -> OutputSpec:
        """A georeferenced ``(embedding, y, x)`` grid.

        ``scale_m=`` is refused as in rs-embed: the sampling resolution is a fetch setting.

        Examples
        --------
        >>> OutputSpec.grid().mode
        'grid'
        """
        _no_output_scale(kwargs)
        return cls("grid", grid_orientation=grid_orientation)

    @classmethod
    def pooled(cls, pooling: str = "mean", **kwargs) -> OutputSpec:
        """One ``(embedding,)`` vector for the whole ROI (``pooling="mean"``)."""
        _no_output_scale(kwargs)
        return cls("pooled", pooling=pooling)


def _no_output_scale(kwargs: dict) -> None:
    """rs-embed moved the sampling resolution off ``OutputSpec``; it raises ``SpecError`` there too."""
    if "scale_m" in kwargs:
        raise SpecError(
            f"OutputSpec takes no scale_m (got scale_m={kwargs['scale_m']!r}): the sampling resolution is set "
            f"when fetching; pass fetch=FetchSpec(scale_m={kwargs['scale_m']!r}) to get_embedding/export_batch."
        )
    if kwargs:
        raise SpecError(f"OutputSpec.grid()/pooled() got unknown keywords {sorted(kwargs)}.")


@dataclass(frozen=True)
class InputPrepSpec(_Validated):
    """How a raster becomes model inputs: ``tile``, ``resize`` or ``auto`` (see the usage docs).

    ``tile_size`` is in pixels; ``None`` means the model's own input size. Another multiple of the patch
    size runs the model at that size with its position embedding resampled, where the family allows it
    (``describe_model(...)["tile_sizes"]``; a departure from the pretraining resolution). ``tile_stride``
    (pixels, ``None`` = ``tile_size``) may not exceed ``tile_size`` (that would leave gaps). Whether a model
    can take the size is checked when the model is known (:meth:`check_model`).

    Examples
    --------
    >>> InputPrepSpec.tile(tile_size=224).tile_size
    224
    """

    mode: str = "tile"
    tile_size: int | None = None
    tile_stride: int | None = None
    max_tiles: int = 64
    max_tiles_hard: int = 1024
    pad_edges: bool = True
    tile_snap_frac: float = 0.1
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.mode not in ("tile", "resize", "auto"):
            raise SpecError(f"InputPrepSpec.mode must be 'tile', 'resize' or 'auto', got {self.mode!r}.")
        for name in ("tile_size", "tile_stride"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise SpecError(f"InputPrepSpec.{name} must be None or a positive number of pixels, got {value!r}.")
        if self.tile_stride is not None and self.tile_size is not None and self.tile_stride > self.tile_size:
            raise SpecError(
                f"InputPrepSpec.tile_stride={self.tile_stride} is larger than tile_size={self.tile_size}: the tiles "
                "would leave gaps; pass tile_stride <= tile_size (or None)."
            )
        for name in ("max_tiles", "max_tiles_hard"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise SpecError(f"InputPrepSpec.{name} must be a positive integer, got {value!r}.")

    def check_model(self, model: str, *, patch_size: int, image_size: int, tile_size_check=None) -> None:
        """Raise :class:`~xrembed.errors.OptionError` unless ``model`` can run these tiles.

        ``tile_size`` is ``None`` / ``image_size`` (the pretraining size) or, where the family takes other
        sizes, a whole number of patches: ``tile_size_check(size)`` (the adapter's
        :meth:`~xrembed.models.base.ModelAdapter.check_tile_size`) decides, and refuses naming the reason;
        without it only the pretraining size runs. ``tile_stride`` is the tile size (abutting tiles) or a whole
        number of patches dividing it (overlapping tiles, :mod:`xrembed.overlap`).
        """
        from .errors import OptionError

        if self.mode == "resize":
            return
        size = self.tile_size if self.tile_size is not None else image_size
        if size != image_size and size % patch_size:
            raise OptionError(
                f"InputPrepSpec.tile(tile_size={size}): tiles of {model!r} must be a whole number of its "
                f"{patch_size} px patches; pass tile_size=None (its own {image_size} px) or a multiple of {patch_size}."
            )
        if size != image_size:
            if tile_size_check is None:
                raise OptionError(
                    f"InputPrepSpec.tile(tile_size={size}): {model!r} runs on its pretraining size of {image_size} px; "
                    f"pass tile_size=None or tile_size={image_size}."
                )
            tile_size_check(size)  # the family's own refusal names its reason
        stride = self.tile_stride if self.tile_stride is not None else size
        if stride != size and (stride % patch_size or (size // patch_size) % (stride // patch_size)):
            divisors = [d * patch_size for d in range(1, size // patch_size) if (size // patch_size) % d == 0]
            raise OptionError(
                f"InputPrepSpec.tile(tile_stride={stride}): overlapping tiles of {model!r} start on its {patch_size} px "
                f"patch lattice and repeat every tile ({size} px); pass a stride in {divisors}, or None for abutting "
                "tiles."
            )

    @classmethod
    def tile(cls, tile_size: int | None = None, tile_stride: int | None = None, **kwargs) -> InputPrepSpec:
        """Tiles of ``tile_size`` pixels (default: the model's input size)."""
        return cls("tile", tile_size=tile_size, tile_stride=tile_stride, **kwargs)

    @classmethod
    def resize(cls) -> InputPrepSpec:
        """The whole ROI resized onto one model input."""
        return cls("resize")

    @classmethod
    def auto(cls, **kwargs) -> InputPrepSpec:
        """Tiles for grids, one resized input for a pooled ROI that fits in a few tiles."""
        return cls("auto", **kwargs)
