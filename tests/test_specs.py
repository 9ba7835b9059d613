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
