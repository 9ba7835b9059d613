"""Specs validate on construction (rs-embed compatible) and compute true-metre geometry."""

import datetime as dt

import numpy as np
import pytest

import xrembed
from xrembed import errors
from xrembed.specs import BBox, FetchSpec, InputPrepSpec, OutputSpec, PointBuffer, SensorSpec, TemporalSpec, utm_crs
from xrembed.testing import synthetic_raster


@pytest.mark.parametrize(
    "build, fix",
    [
        (lambda: BBox(10, 50, 9, 51), "inverted"),
        (lambda: BBox(10, 51, 11, 50), "inverted"),
        (lambda: BBox(10, 50, 200, 51), "outside"),
        (lambda: BBox(10, 50, 11, float("nan")), "finite"),
        (lambda: BBox(0, 0, 1, 1, crs="EPSG:999999"), "CRS"),
        (lambda: PointBuffer(10, 50, 0), "positive"),
        (lambda: PointBuffer(10, 50, -5), "positive"),
        (lambda: PointBuffer(10, 95, 100), "latitude"),
        (lambda: TemporalSpec.range("2022-09-01", "2022-06-01"), "before"),
        (lambda: TemporalSpec.range("2022-06-01", "2022-06-01"), "before"),
        (lambda: TemporalSpec.range("June", "2022-06-01"), "ISO"),
        (lambda: TemporalSpec.year(22.5), "year"),
        (lambda: TemporalSpec("month"), "mode"),
        (lambda: SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ("B4",), composite="mean"), "median"),
        (lambda: SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ()), "non-empty"),
        (lambda: SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ("B4",), scale_m=0), "positive"),
        (lambda: SensorSpec("COPERNICUS/S1_GRD", ("VV",), orbit="sideways"), "ASCENDING"),
        (lambda: FetchSpec(cloudy_pct=120), "percentage"),
        (lambda: FetchSpec(composite="max"), "median"),
        (lambda: OutputSpec("vector"), "grid"),
        (lambda: OutputSpec.pooled(pooling="median"), "mean"),
        (lambda: InputPrepSpec("crop"), "tile"),
    ],
)
def test_invalid_specs_raise(build, fix):
    with pytest.raises(errors.SpecError, match=fix):
        build()


def test_temporal_spec_is_half_open():
    assert TemporalSpec.year(2024).interval == ("2024-01-01", "2025-01-01")
    assert TemporalSpec.year(2024).year == 2024
    spec = TemporalSpec.range(dt.date(2022, 6, 1), "2022-09-01T00:00:00")
    assert spec.interval == ("2022-06-01", "2022-09-01") and spec.year is None


def test_point_buffer_is_true_ground_metres_at_any_latitude():
    for lat in (0.0, 45.0, 70.0):
        point = PointBuffer(15.0, lat, 1000)
        left, bottom, right, top = point.bounds_in(point.local_utm())
        assert (right - left, top - bottom) == pytest.approx((2000, 2000))
        # in degrees the box widens towards the poles, as ground metres do
        lon0, _, lon1, _ = point.bounds_in("EPSG:4326")
        metres_per_degree = 111_320 * np.cos(np.radians(lat))
        assert (lon1 - lon0) * metres_per_degree == pytest.approx(2000, rel=0.01)


def test_bbox_bounds_and_utm():
    box = BBox(-9.9, 24.9, -9.5, 25.2)
    assert box.local_utm().to_epsg() == 32629
    left, bottom, right, top = box.bounds_in("EPSG:32629")
    assert left < right and bottom < top
    assert utm_crs(-9.5, -10).to_epsg() == 32729


def test_specs_drive_embed():
    da = synthetic_raster((32, 32))
    pooled = da.rsembed.embed("dofa-tiny", weights="random", output=OutputSpec.pooled(), input_prep=InputPrepSpec.tile())
    assert pooled.dims == ("embedding",) and pooled.attrs["input_prep"] == "tile"
    with pytest.raises(errors.OptionError, match="pooling='max'"):
        da.rsembed.embed("dofa-tiny", weights="random", output=OutputSpec.pooled(pooling="max"))


def test_specs_exported_at_top_level():
    for name in ("BBox", "PointBuffer", "TemporalSpec", "SensorSpec", "FetchSpec", "OutputSpec", "InputPrepSpec"):
        assert getattr(xrembed, name) is getattr(xrembed.specs, name)


# -- rs-embed's validate(), OutputSpec(scale_m) and InputPrepSpec tile sizes ------------------------------------

VALID_SPECS = [
    BBox(-9.9, 24.9, -9.5, 25.2),
    PointBuffer(-9.5, 25.0, 500),
    TemporalSpec.year(2022),
    TemporalSpec.range("2022-06-01", "2022-09-01"),
    SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ("B4", "B3", "B2")),
    FetchSpec(scale_m=20, cloudy_pct=10),
    OutputSpec.grid(),
    OutputSpec.pooled(),
    InputPrepSpec.tile(tile_size=224),
]


@pytest.mark.parametrize("spec", VALID_SPECS, ids=lambda s: type(s).__name__)
def test_validate_returns_the_spec_unchanged(spec):
    before = repr(spec)
    assert spec.validate() is spec
    assert repr(spec) == before  # validate() of a valid spec normalises nothing further


@pytest.mark.parametrize(
    "spec, field, bad, fix",
    [
        (BBox(0, 0, 1, 1), "maxlon", -1, "inverted"),
        (PointBuffer(0, 0, 100), "buffer_m", 0, "positive"),
        (TemporalSpec.year(2022), "year", "2022", "four-digit"),
        (SensorSpec("COPERNICUS/S2_SR_HARMONIZED", ("B4",)), "composite", "max", "median"),
        (FetchSpec(), "scale_m", -10, "positive"),
        (OutputSpec.grid(), "mode", "patch", "grid"),
        (InputPrepSpec.tile(), "tile_size", -5, "positive number of pixels"),
    ],
    ids=lambda v: type(v).__name__ if hasattr(v, "validate") else None,
)
def test_validate_rechecks_a_spec_altered_after_construction(spec, field, bad, fix):
    object.__setattr__(spec, field, bad)  # what a frozen dataclass still allows
    with pytest.raises(errors.SpecError, match=fix):
        spec.validate()


def test_output_spec_scale_m_names_fetch_spec():
    """rs-embed's README shows OutputSpec.grid(scale_m=10); rs-embed itself now refuses it with SpecError."""
    with pytest.raises(errors.SpecError, match=r"fetch=FetchSpec\(scale_m=10\)"):
        OutputSpec.grid(scale_m=10)
    with pytest.raises(errors.SpecError, match=r"FetchSpec\(scale_m=30\)"):
        OutputSpec.pooled(scale_m=30)
    with pytest.raises(errors.SpecError, match="unknown keywords"):
        OutputSpec.grid(orientation="native")


def test_input_prep_spec_tile_sizes():
    from xrembed.tiling import check_input_prep

    spec = InputPrepSpec.tile(tile_size=224)
    assert (spec.mode, spec.tile_size, spec.tile_stride) == ("tile", 224, None)
    check_input_prep("dofa", spec)  # DOFA's own size: today's behaviour
    check_input_prep("dofa", InputPrepSpec.tile(tile_size=224, tile_stride=224))
    check_input_prep("dofa", "tile")
    check_input_prep("tessera", InputPrepSpec.tile(tile_size=7))  # products have no tiles
    with pytest.raises(errors.SpecError, match="gaps"):
        InputPrepSpec.tile(tile_size=224, tile_stride=300)
    with pytest.raises(errors.SpecError, match="positive number of pixels"):
        InputPrepSpec.tile(tile_size=0)
    with pytest.raises(errors.OptionError, match="multiple of 16"):
        check_input_prep("dofa", InputPrepSpec.tile(tile_size=100))
    check_input_prep("dofa", InputPrepSpec.tile(tile_size=448))  # resampled position embedding (test_tile_size.py)
    check_input_prep("dofa", InputPrepSpec.tile(tile_stride=112))  # overlapping tiles (tests/compat/test_overlap_tiles.py)
    with pytest.raises(errors.OptionError, match=r"pass a stride in \[16, 32, 112\]"):
        check_input_prep("dofa", InputPrepSpec.tile(tile_stride=100))
    with pytest.raises(errors.OptionError, match="multiple of 8"):  # dofa-tiny: patch 8, 32 px
        check_input_prep("dofa-tiny", InputPrepSpec.tile(tile_size=36))


def test_unrunnable_tile_size_is_refused_before_any_pixel_is_read(tmp_path):
    """The check runs in get_embedding and export_batch before a source is opened."""
    pb = PointBuffer(-9.5, 25.0, 500)
    with pytest.raises(errors.OptionError, match="tile_size"):
        xrembed.get_embedding("dofa-tiny", spatial=pb, source=tmp_path / "missing.tif",
                              input_prep=InputPrepSpec.tile(tile_size=36), weights="random")
    with pytest.raises(errors.OptionError, match="tile_size"):
        xrembed.export_batch(spatials=[pb], temporal=None, source=tmp_path / "missing.tif",
                             models=[xrembed.ExportModelRequest.configure("dofa-tiny", weights="random")],
                             target=xrembed.ExportTarget.combined(tmp_path / "e.zarr"),
                             input_prep=InputPrepSpec.tile(tile_size=36))
    assert not (tmp_path / "e.zarr").exists()
