"""emb.rsembed.sample: one row per point from the nearest cell, points in other CRSs reprojected, points off
the raster refused (or NaN rows on request), NaN cells kept NaN, lazy input read only where the points are,
GeoParquet export, and real SCL labels (bare soil, thin cirrus, cloud) on the real scene."""

from __future__ import annotations

import dask.array as dsa
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray
import shapely
import xarray as xr
from pyproj import Transformer

import xrembed
from xrembed.errors import MissingCRSError, NoDataInBoundsError, OptionError

RES = 20.0
X0, Y0 = 300_000.0, 2_800_000.0


def grid_emb(values: np.ndarray) -> xr.DataArray:
    depth, height, width = values.shape
    return xr.DataArray(
        values,
        dims=("embedding", "y", "x"),
        coords={"embedding": np.arange(depth), "y": Y0 - RES * (np.arange(height) + 0.5), "x": X0 + RES * (np.arange(width) + 0.5)},
    ).rio.write_crs("EPSG:32629")


@pytest.fixture
def values():
    return np.random.default_rng(1).normal(size=(3, 9, 11))


def random_points(n, seed=0, height=9, width=11):
    rng = np.random.default_rng(seed)
    return np.column_stack([X0 + rng.uniform(0, width * RES, n), Y0 - rng.uniform(0, height * RES, n)])


def nearest_cell(emb, x, y):
    """The cell whose centre is nearest, by brute-force distance to every centre."""
    ys, xs = np.meshgrid(emb.y.values, emb.x.values, indexing="ij")
    d = (xs[None] - x[:, None, None]) ** 2 + (ys[None] - y[:, None, None]) ** 2
    flat = d.reshape(len(x), -1).argmin(axis=1)
    return np.unravel_index(flat, xs.shape)


def test_one_row_per_point_from_the_nearest_cell(values):
    emb = grid_emb(values)
    pts = random_points(40)
    table = emb.rsembed.sample(pts)
    assert isinstance(table, pd.DataFrame) and len(table) == 40
    rows, cols = nearest_cell(emb, pts[:, 0], pts[:, 1])
    np.testing.assert_array_equal(table[["e000", "e001", "e002"]].to_numpy(), values[:, rows, cols].T)
    np.testing.assert_array_equal(table["cell_x"], emb.x.values[cols])
    np.testing.assert_array_equal(table["cell_y"], emb.y.values[rows])
    np.testing.assert_array_equal(table[["x", "y"]].to_numpy(), pts)
    assert table["inside"].all()


def test_points_in_another_crs_are_reprojected(values):
    emb = grid_emb(values)
    pts = random_points(25, seed=4)
    lon, lat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform(pts[:, 0], pts[:, 1])
    gdf = gpd.GeoDataFrame({"id": np.arange(25)}, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    table = emb.rsembed.sample(gdf)
    assert isinstance(table, gpd.GeoDataFrame) and table.crs.to_epsg() == 4326
    assert list(table["id"]) == list(range(25)) and table.geometry.equals(gdf.geometry)
    rows, cols = nearest_cell(emb, pts[:, 0], pts[:, 1])
    np.testing.assert_array_equal(table[["e000", "e001", "e002"]].to_numpy(), values[:, rows, cols].T)
    # bare (lon, lat) pairs with crs=, shapely points with crs=: the same cells
    by_pairs = emb.rsembed.sample(np.column_stack([lon, lat]), crs="EPSG:4326")
    np.testing.assert_array_equal(by_pairs["e001"], table["e001"])
    by_shapely = emb.rsembed.sample(list(gdf.geometry), crs="EPSG:4326")
    np.testing.assert_array_equal(by_shapely["e002"], table["e002"])


def test_points_off_the_raster(values):
    emb = grid_emb(values)
    pts = np.array([[X0 + 5, Y0 - 5], [X0 - 1.0, Y0 - 5], [X0 + 5, Y0 + 40.0]])
    with pytest.raises(NoDataInBoundsError, match="outside='nan'"):
        emb.rsembed.sample(pts)
    table = emb.rsembed.sample(pts, outside="nan")
    assert table["inside"].tolist() == [True, False, False]
    assert np.isnan(table.loc[1:, ["e000", "e001", "e002", "cell_x"]].to_numpy()).all()
    np.testing.assert_array_equal(table.loc[0, ["e000", "e001", "e002"]].to_numpy(float), values[:, 0, 0])
    # lon/lat given as if they were the raster's metres: off the raster, and the message says to check the CRS
    with pytest.raises(NoDataInBoundsError, match="crs="):
        emb.rsembed.sample([(-10.9, 25.3)])


def test_nan_cells_stay_nan(values):
    values = values.copy()
    values[:, 2, 3] = np.nan
    emb = grid_emb(values)
    centre = (float(emb.x[3]), float(emb.y[2]))
    table = emb.rsembed.sample([centre, (float(emb.x[4]), float(emb.y[2]))])
    assert np.isnan(table.loc[0, ["e000", "e001", "e002"]].to_numpy(float)).all() and table.loc[0, "inside"]
    assert np.isfinite(table.loc[1, ["e000", "e001", "e002"]].to_numpy(float)).all()


def test_lazy_input_reads_only_the_chunks_with_points(values):
    def block(block_info=None):
        (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
        if c0 >= 6:
            raise RuntimeError("the right-hand chunks must not be read")
        return values[:, r0:r1, c0:c1]

    lazy = dsa.map_blocks(block, chunks=((3,), (5, 4), (6, 5)), dtype=float, meta=np.array((), dtype=float))
    emb = grid_emb(values).copy(data=lazy)
    pts = random_points(30, seed=2, width=6)
    table = emb.rsembed.sample(pts)
    rows, cols = nearest_cell(emb, pts[:, 0], pts[:, 1])
    np.testing.assert_array_equal(table[["e000", "e001", "e002"]].to_numpy(), values[:, rows, cols].T)


def test_band_and_label_rasters_name_their_columns(values):
    bands = grid_emb(values).rename(embedding="band").assign_coords(band=["B02", "B03", "B04"])
    assert list(bands.rsembed.sample(random_points(3)).columns[-3:]) == ["B02", "B03", "B04"]
    labels = grid_emb(values).isel(embedding=0, drop=True).rename("scl")
    assert list(labels.rsembed.sample(random_points(3)).columns) == ["x", "y", "cell_x", "cell_y", "inside", "scl"]


def test_errors_name_the_fix(values):
    emb = grid_emb(values)
    with pytest.raises(MissingCRSError, match="set_crs"):
        emb.rsembed.sample(gpd.GeoDataFrame(geometry=[shapely.Point(X0 + 1, Y0 - 1)]))
    with pytest.raises(OptionError, match="representative_point"):
        emb.rsembed.sample(gpd.GeoSeries([shapely.box(X0, Y0 - 20, X0 + 20, Y0)], crs="EPSG:32629"))
    with pytest.raises(OptionError, match=r"\(n, 2\)"):
        emb.rsembed.sample(np.zeros((4, 3)))
    with pytest.raises(OptionError, match="isel"):
        emb.expand_dims(time=2).rsembed.sample(random_points(2))
    with pytest.raises(OptionError, match="outside="):
        emb.rsembed.sample(random_points(2), outside="drop")


def test_geoparquet_round_trip(values, tmp_path):
    emb = grid_emb(values)
    gdf = gpd.GeoDataFrame(geometry=gpd.points_from_xy(*random_points(6).T), crs="EPSG:32629")
    table = emb.rsembed.sample(gdf)
    table.to_parquet(tmp_path / "points.parquet")
    back = gpd.read_parquet(tmp_path / "points.parquet")
    assert back.crs.to_epsg() == 32629
    pd.testing.assert_frame_equal(pd.DataFrame(back.drop(columns="geometry")), pd.DataFrame(table.drop(columns="geometry")))


# SCL classes of the real scene: bare soil, thin cirrus, cloud (medium and high probability)
SCL_CLASSES = {5: "bare soil", 10: "thin cirrus", 8: "cloud", 9: "cloud"}


def scl_points(s2_scene, per_class=15, seed=0):
    """Labelled points at SCL cell centres (200 m), in the cloudy north-east of the scene."""
    rng = np.random.default_rng(seed)
    with rasterio.open(s2_scene / "SCL.tif") as src:
        scl = src.read(1)
        rows, cols = np.nonzero(np.isin(scl, list(SCL_CLASSES)))
        keep = (rows < 224) & (cols >= 325)
        rows, cols = rows[keep], cols[keep]
        picks = []
        for name in ("bare soil", "thin cirrus", "cloud"):
            idx = np.flatnonzero([SCL_CLASSES[v] == name for v in scl[rows, cols]])
            picks += list(rng.choice(idx, per_class, replace=False))
        rows, cols = rows[picks], cols[picks]
        xs, ys = rasterio.transform.xy(src.transform, rows, cols)
        labels = scl[rows, cols]
    return gpd.GeoDataFrame({"scl": labels}, geometry=gpd.points_from_xy(xs, ys), crs=src.crs), rows, cols


def test_real_scl_labels_on_the_real_scene(s2_scene):
    points, rows, cols = scl_points(s2_scene)
    # the label raster itself (read by rioxarray) sampled at the points gives back their SCL codes
    scl = rioxarray.open_rasterio(s2_scene / "SCL.tif", chunks=128).squeeze("band", drop=True).rename("code")
    assert scl.rsembed.sample(points)["code"].astype(int).tolist() == points["scl"].tolist()
    # a lazy random-weight embedding of the real scene, sampled at the same points, in lon/lat
    da = xrembed.open_raster(s2_scene).isel(y=slice(0, 448), x=slice(650, 1098))
    emb = da.rsembed.embed("dofa-tiny", weights="random")
    table = emb.rsembed.sample(points.to_crs("EPSG:4326"))
    assert len(table) == len(points) and np.isfinite(table.filter(regex=r"^e\d+$").to_numpy()).all()
    direct = emb.sel(x=xr.DataArray(table["cell_x"]), y=xr.DataArray(table["cell_y"])).transpose("dim_0", "embedding")
    np.testing.assert_allclose(table.filter(regex=r"^e\d+$").to_numpy(), direct.values, rtol=1e-6)
    # each point's embedding cell (patch 8 at 100 m = 800 m) holds the point
    assert (np.abs(table["cell_x"] - points.geometry.x) <= 400).all() and (np.abs(table["cell_y"] - points.geometry.y) <= 400).all()


def test_datasets_are_read_through_their_embeddings_variable(values):
    emb = grid_emb(values)
    pts = random_points(5)
    got = emb.to_dataset(name="embeddings").assign(other=emb.isel(embedding=0, drop=True)).rsembed.sample(pts)
    pd.testing.assert_frame_equal(got, emb.rsembed.sample(pts))
    with pytest.raises(OptionError, match="to_array"):
        xr.Dataset({"a": emb.isel(embedding=0, drop=True), "b": emb.isel(embedding=1, drop=True)}).rsembed.sample(pts)


def test_an_xee_style_grid_with_its_crs_in_attrs(values):
    emb = grid_emb(values).drop_vars("spatial_ref")
    emb.attrs["crs"] = "EPSG:32629"
    pts = random_points(8, seed=5)
    lon, lat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True).transform(pts[:, 0], pts[:, 1])
    table = emb.rsembed.sample(np.column_stack([lon, lat]), crs="EPSG:4326")
    rows, cols = nearest_cell(emb, pts[:, 0], pts[:, 1])
    np.testing.assert_array_equal(table[["e000", "e001", "e002"]].to_numpy(), values[:, rows, cols].T)
