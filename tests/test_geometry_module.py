"""xrembed.geo is the one home of lattice geometry: snapping, windows, pixel centres, UTM zones, units."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from pyproj import CRS

from xrembed import geo
from xrembed.geo import Grid, PixelWindow, pixel_centres, pixel_window, snap_outwards

NORTH_UP = Affine(10, 0, 500_000, 0, -10, 4_200_000)


def test_snap_outwards_absorbs_float_noise_but_not_a_real_sliver():
    assert snap_outwards(0.3 / 0.1, 0.7 / 0.1) == (3, 7)  # 2.9999999999999996, 7.000000000000001
    assert snap_outwards(2.99, 7.01) == (2, 8)
    assert snap_outwards(3 - 2 * geo.LATTICE_TOLERANCE, 7 + 2 * geo.LATTICE_TOLERANCE) == (2, 8)


def test_pixel_window_is_the_same_for_north_up_and_south_up_lattices():
    bounds = (500_015, 4_199_905, 500_041, 4_199_990)
    north = pixel_window(bounds, NORTH_UP)
    assert north == PixelWindow(row0=1, row1=10, col0=1, col1=5)
    south_up = Affine(10, 0, 500_000, 0, 10, 4_199_900)  # row 0 at the bottom
    assert pixel_window(bounds, south_up) == PixelWindow(row0=0, row1=9, col0=1, col1=5)


def test_window_clipping_and_grid_crop_stay_on_the_lattice():
    grid = Grid((20, 30), NORTH_UP, CRS.from_epsg(32629))
    window = grid.window((499_950, 4_199_850, 500_020, 4_200_100))
    assert window == PixelWindow(-10, 15, -5, 2)
    assert window.clipped(grid.shape) == PixelWindow(0, 15, 0, 2)
    assert PixelWindow(25, 30, 0, 2).clipped(grid.shape).is_empty
    cropped = grid[window]
    assert cropped.shape == (25, 7)
    assert cropped.transform == Affine(10, 0, 499_950, 0, -10, 4_200_100)


def test_pixel_centres_match_rioxarray_and_an_offset_window():
    y, x = pixel_centres(NORTH_UP, (3, 4))
    np.testing.assert_array_equal(x, [500_005, 500_015, 500_025, 500_035])
    np.testing.assert_array_equal(y, [4_199_995, 4_199_985, 4_199_975])
    y_off, x_off = pixel_centres(NORTH_UP, (1, 2), origin=(2, 1))
    np.testing.assert_array_equal(x_off, x[1:3])
    np.testing.assert_array_equal(y_off, y[2:3])


def test_grid_round_trips_through_an_odc_geobox():
    grid = Grid((70, 90), NORTH_UP, CRS.from_epsg(32629))
    geobox = grid.to_geobox()
    assert tuple(geobox.shape) == grid.shape and geobox.affine == grid.transform
    assert Grid.from_geobox(geobox) == grid
    # The output grid of a patch-16 model is odc-geo's zoom-out of the input grid.
    assert Grid.from_geobox(geobox.zoom_out(16)) == grid.zoom_out(16)


@pytest.mark.parametrize(
    ("lon", "lat", "epsg"), [(-9.5, 25.0, 32629), (151.2, -33.9, 32756), (180.0, 0.0, 32660), (-180.0, -1.0, 32701)]
)
def test_utm_crs(lon, lat, epsg):
    assert geo.utm_crs(lon, lat).to_epsg() == epsg
    zone = geo.utm_zone_of(geo.utm_crs(lon, lat))
    assert geo.utm_crs_of_zone(*zone).to_epsg() == epsg


def test_utm_zones_of_a_span():
    assert geo.utm_zones(-7.0, -6.0) == [29]  # an east edge on the boundary does not touch zone 30
    assert geo.utm_zones(-7.0, -5.9) == [29, 30]
    assert geo.utm_zones(174.0, 180.0) == [60]
    assert geo.utm_zones(-6.0, -6.0) == [30]  # a point on a boundary belongs to the zone east of it
    assert geo.utm_zone_of(CRS.from_epsg(4326)) is None


def test_metres_per_unit():
    assert geo.metres_per_unit(CRS.from_epsg(4326)) == 111_320.0
    assert geo.metres_per_unit(CRS.from_epsg(4326), 60.0) == pytest.approx(111_320.0 * math.cos(math.radians(60)))
    assert geo.metres_per_unit(CRS.from_epsg(32629)) == 1.0
    assert geo.metres_per_unit(CRS.from_epsg(2227)) == pytest.approx(0.3048006096)  # US survey feet


def test_no_lattice_epsilon_or_m_per_degree_constant_outside_geo():
    """Snapping tolerances and the m/degree factor live in geo.py only."""
    package = Path(geo.__file__).parent
    pattern = re.compile(r"(floor|ceil)\([^)\n]*[+-] ?(1e-\d|_EPS|eps)\b|111_?320|^_EPS\s*=")
    offenders = [
        f"{path.relative_to(package)}:{number}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "geo.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
