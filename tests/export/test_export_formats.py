"""Export formats: every format x layout x kind of result round-trips values, NaN, CRS, transform, coords
and attrs; GeoTIFF refuses what it cannot hold; writes are atomic; convention attrs match the grid."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as dsa
import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from pyproj import CRS

from xrembed.errors import OptionError

# The zarr layouts are written by hand below, with zarr-python's own warnings about v3 (not ours to fix).
pytestmark = [
    pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part:UserWarning"),
    pytest.mark.filterwarnings("ignore:The data type .* does not have a Zarr V3 specification"),
]
from xrembed.export import conventions, formats
from xrembed.export.formats import (
    FORMATS,
    item_paths,
    normalize_format,
    read_combined,
    read_item,
    write_combined,
    write_item,
)
from xrembed.geo import Grid, assign_grid

# A CRS without an EPSG code (odd LAEA centre), to exercise WKT paths.
CUSTOM_CRS = CRS.from_proj4("+proj=laea +lat_0=45.5 +lon_0=-3.25 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs")
TIMES = np.array(["2021-03-01", "2021-07-01"], dtype="datetime64[ns]")
NAMES = ["p0", "p1", "p2"]


def _attrs(output: str, **extra) -> dict:
    attrs = {
        "long_name": "dofa embeddings",
        "model": "dofa",
        "variant": "base",
        "weights": "random(seed=0)",
        "patch_size": 16,
        "image_size": 224,
        "input_prep": "tile",
        "output": output,
        "bands": ["B04", "B03", "B02"],
        "wavelengths_um": [0.665],  # a one-element list must stay a list
        "input_crs": "EPSG:32629",
        "input_bounds": [500000.0, 4199360.0, 500800.0, 4200000.0],
        "plan_scale": 0.5,
    }
    if output == "grid":
        attrs["cell_size"] = [160.0, 160.0]
    attrs.update(extra)
    return attrs


def _values(shape, seed):
    values = np.random.default_rng(seed).normal(size=shape).astype("float32")
    values[..., 0] = np.nan  # no-data cells / a failed dimension must survive as NaN
    return values


UTM29 = CRS.from_epsg(32629)


def make_grid(*, time=False, crs=UTM29, shape=(3, 4), dim=5, seed=0, origin=(500000.0, 4200000.0)):
    """A grid result built by hand: ``([time,] embedding, y, x)`` on a 160 m grid with a CRS."""
    dims = ("embedding", "y", "x")
    full = (dim, *shape)
    coords = {"embedding": np.arange(dim)}
    if time:
        dims, full, coords = ("time", *dims), (len(TIMES), *full), {**coords, "time": TIMES}
    da = xr.DataArray(_values(full, seed), dims=dims, coords=coords, name="embeddings")
    grid = Grid(shape, Affine(160.0, 0.0, origin[0], 0.0, -160.0, origin[1]), crs)
    return assign_grid(da, grid).assign_attrs(_attrs("grid"))


def make_pooled(*, time=False, dim=5, seed=0, **extra):
    dims, shape, coords = ("embedding",), (dim,), {"embedding": np.arange(dim)}
    if time:
        dims, shape, coords = ("time", *dims), (len(TIMES), dim), {**coords, "time": TIMES}
    values = _values(shape, seed)
    return xr.DataArray(values, dims=dims, coords=coords, name="embeddings", attrs=_attrs("pooled", **extra))


def assert_same(result: xr.DataArray, expected: xr.DataArray, *, coord_atol: float = 0.0) -> None:
    assert result.name == "embeddings"
    assert result.dims == expected.dims
    assert result.dtype == expected.dtype
    np.testing.assert_array_equal(result.values, expected.values)  # NaN == NaN here
    assert np.isnan(result.values).sum() == np.isnan(expected.values).sum() > 0 or not np.isnan(expected.values).any()
    for dim in expected.dims:
        if dim in ("y", "x"):
            np.testing.assert_allclose(result[dim].values, expected[dim].values, rtol=0, atol=coord_atol)
        else:
            np.testing.assert_array_equal(result[dim].values, expected[dim].values)
    assert result.attrs == expected.attrs
    for key, value in expected.attrs.items():
        assert type(result.attrs[key]) is type(value), key
    if "y" in expected.dims:
        assert result.rio.crs == expected.rio.crs
        assert CRS.from_user_input(result.rio.crs) == CRS.from_user_input(expected.rio.crs)
        assert result.rio.transform() == expected.rio.transform()  # cached, no recalc
        # rio.transform() takes the origin from the coords; the stored GeoTransform must be right as well.
        stored = Affine.from_gdal(*map(float, result["spatial_ref"].attrs["GeoTransform"].split()))
        assert stored == expected.rio.transform()
        assert result.rio.transform(recalc=True).almost_equals(expected.rio.transform())


def _write_zarr_item(out_dir: Path, name: str, results: dict) -> None:
    """The per-item zarr layout, written by hand: ``<name>.zarr/<model>`` holds ``{"embeddings": da}``."""
    for i, (model, da) in enumerate(results.items()):
        da.to_dataset(name="embeddings").to_zarr(out_dir / f"{name}.zarr", group=model, mode="w" if i == 0 else "a")


def _stacked_by_hand(results: dict, shared_attrs: dict) -> xr.DataArray:
    first = next(da for da in results.values() if da is not None)
    values = np.full((len(NAMES), first.sizes["embedding"]), np.nan, dtype="float32")
    for row, name in enumerate(NAMES):
        if results.get(name) is not None:
            values[row] = results[name].values
    coords = {"item": NAMES, "embedding": first["embedding"].values}
    return xr.DataArray(values, dims=("item", "embedding"), coords=coords, name="embeddings", attrs=shared_attrs)


def _write_zarr_combined(store: Path, results: dict, shared: dict) -> None:
    """The combined zarr layout, written by hand (stacked pooled at /<model>, others at /<model>/<name>)."""
    mode = "w"
    for model, by_name in results.items():
        if model in shared:
            _stacked_by_hand(by_name, shared[model]).to_dataset().to_zarr(store, group=model, mode=mode)
            mode = "a"
            continue
        for name, da in by_name.items():
            if da is not None:
                da.to_dataset(name="embeddings").to_zarr(store, group=f"{model}/{name}", mode=mode)
                mode = "a"


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------------------------- names


def test_normalize_format_aliases_and_refusal():
    assert [normalize_format(f) for f in ("tif", "TIFF", "cog", "nc", "netcdf4", "zarr", "npz", "GeoTIFF")] == [
        "geotiff", "geotiff", "geotiff", "netcdf", "netcdf", "zarr", "npz", "geotiff",
    ]
    with pytest.raises(OptionError, match="zarr.*geotiff.*netcdf.*npz"):
        normalize_format("parquet")
    with pytest.raises(OptionError):
        normalize_format(None)


def test_item_paths(tmp_path):
    assert item_paths(tmp_path, "p00000", "zarr", ["a", "b"]) == [tmp_path / "p00000.zarr"]
    assert item_paths(tmp_path, "p00000", "nc", ["a", "b"]) == [tmp_path / "p00000.nc"]
    assert item_paths(tmp_path, "p00000", "npz", ["a"]) == [tmp_path / "p00000.npz"]
    assert item_paths(tmp_path, "p00000", "cog", ["a", "b"]) == [tmp_path / "p00000__a.tif", tmp_path / "p00000__b.tif"]
    with pytest.raises(OptionError, match="__"):
        item_paths(tmp_path, "p0", "geotiff", ["bad__label"])
    with pytest.raises(OptionError):
        item_paths(tmp_path, "../p0", "netcdf", ["a"])


# --------------------------------------------------------------------------------------------- per item


@pytest.mark.parametrize("fmt", ["netcdf", "npz", "zarr"])
def test_per_item_round_trip(tmp_path, fmt):
    results = {
        "dofa": make_grid(seed=1),
        "custom": make_grid(crs=CUSTOM_CRS, seed=2, origin=(-1000.0, 2000.0)),
        "clip": make_pooled(seed=3),
        "tt": make_grid(time=True, seed=4),
        "pt": make_pooled(time=True, seed=5),
    }
    if fmt == "zarr":
        _write_zarr_item(tmp_path, "p00000", results)
    else:
        written = write_item(tmp_path, "p00000", results, fmt)
        assert written == item_paths(tmp_path, "p00000", fmt, list(results))
    assert _files(tmp_path) == [p.name for p in item_paths(tmp_path, "p00000", fmt, list(results))]  # no temp left

    back = read_item(tmp_path, "p00000", fmt)
    assert sorted(back) == sorted(results)
    for model, expected in results.items():
        assert_same(back[model], expected)
        if fmt != "npz":
            assert back[model].chunks is not None, "zarr/netcdf readers are lazy"
    # The item's own file works too, without the name.
    (own,) = item_paths(tmp_path, "p00000", fmt, list(results))
    assert_same(read_item(own, None, fmt)["dofa"], results["dofa"])
    if fmt == "netcdf":  # CF: the data variable names its grid mapping, which carries the WKT
        import h5netcdf

        with h5netcdf.File(own, "r") as f:
            var = f["dofa"].variables["embeddings"]
            assert var.attrs["grid_mapping"] == "spatial_ref"
            assert CRS.from_wkt(f["dofa"].variables["spatial_ref"].attrs["crs_wkt"]) == CRS.from_epsg(32629)
    if fmt == "npz":
        with np.load(own, allow_pickle=False) as z:
            assert Affine(*z["transform__dofa"]) == results["dofa"].rio.transform()
            assert CRS.from_wkt(str(z["crs__custom"])) == CUSTOM_CRS
            assert list(z["dims__tt"]) == ["time", "embedding", "y", "x"]


@pytest.mark.parametrize("cog", [True, False], ids=["cog", "gtiff-fallback"])
def test_per_item_geotiff_round_trip(tmp_path, monkeypatch, cog):
    if cog and not formats._has_cog_driver():
        pytest.skip("this GDAL has no COG driver")
    monkeypatch.setattr(formats, "_has_cog_driver", lambda: cog)
    results = {"dofa": make_grid(seed=1), "custom": make_grid(crs=CUSTOM_CRS, seed=2, origin=(-1000.0, 2000.0))}
    written = write_item(tmp_path, "p00000", results, "geotiff")
    assert written == item_paths(tmp_path, "p00000", "geotiff", list(results))
    assert _files(tmp_path) == ["p00000__custom.tif", "p00000__dofa.tif"]

    back = read_item(tmp_path, "p00000", "geotiff")
    assert sorted(back) == ["custom", "dofa"]
    for model, expected in results.items():
        assert_same(back[model], expected, coord_atol=1e-6)
        assert back[model].chunks is not None
        assert np.isnan(back[model].rio.nodata)  # the file's nodata survives the read-back, as for every grid
        assert "_FillValue" not in back[model].attrs
    single = read_item(tmp_path / "p00000__dofa.tif", None, "tif")
    assert list(single) == ["dofa"]

    with rasterio.open(tmp_path / "p00000__dofa.tif") as src:
        assert src.count == 5 and src.dtypes[0] == "float32" and np.isnan(src.nodata)
        assert src.descriptions == ("E000", "E001", "E002", "E003", "E004")
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        tags = src.tags()
        assert tags["model"] == "dofa" and json.loads(tags["bands"]) == ["B04", "B03", "B02"]
        assert tags["patch_size"] == "16"
        assert (src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG") is cog


def test_geotiff_refuses_pooled_and_extra_dims_before_writing(tmp_path):
    with pytest.raises(OptionError, match="format='zarr' or format='netcdf'"):
        write_item(tmp_path, "p0", {"dofa": make_grid(), "clip": make_pooled()}, "geotiff")
    with pytest.raises(OptionError, match="extra dimensions"):
        write_item(tmp_path, "p0", {"tt": make_grid(time=True)}, "geotiff")
    assert _files(tmp_path) == []  # validated first: not even the valid grid was written
    with pytest.raises(OptionError, match=r"ExportTarget.per_item\(...\) for GeoTIFF, or format='zarr'"):
        write_combined(tmp_path / "all.tif", NAMES, {"dofa": {"p0": make_grid()}}, "geotiff")
    assert _files(tmp_path) == []


def test_streams_dask_results_from_the_pipeline_and_from_zarr(tmp_path):
    from xrembed.testing import synthetic_raster

    emb = synthetic_raster((64, 80), chunks={"x": 40}).rsembed.embed("dofa-tiny", weights="random")
    assert emb.chunks is not None
    expected = emb.compute()
    # A lazily opened Zarr result (zarr encodings and all) goes to the other formats as well.
    emb.to_dataset().to_zarr(tmp_path / "src.zarr")
    lazy = xr.open_zarr(tmp_path / "src.zarr", decode_coords="all")["embeddings"]
    assert lazy.chunks is not None
    for i, source in enumerate([emb, lazy]):
        out = tmp_path / f"out{i}"
        write_item(out, "p0", {"dofa": source}, "geotiff")
        write_item(out, "p0", {"dofa": source}, "netcdf")
        assert_same(read_item(out, "p0", "geotiff")["dofa"], expected, coord_atol=1e-6)
        assert_same(read_item(out, "p0", "netcdf")["dofa"], expected)


def test_failed_write_leaves_nothing_and_overwrite_replaces(tmp_path):
    good = make_grid(seed=1)

    def boom(block):
        raise RuntimeError("chunk failed")

    bad = good.copy(data=dsa.from_array(good.values, chunks=(5, 3, 2)).map_blocks(boom, dtype="float32"))
    for fmt in ("netcdf", "geotiff", "npz"):
        with pytest.raises(RuntimeError, match="chunk failed"):
            write_item(tmp_path, "p0", {"dofa": bad}, fmt)
    assert _files(tmp_path) == []

    write_item(tmp_path, "p0", {"dofa": good}, "netcdf")
    newer = make_grid(seed=9)
    write_item(tmp_path, "p0", {"dofa": newer}, "netcdf")
    assert_same(read_item(tmp_path, "p0", "netcdf")["dofa"], newer)
    assert _files(tmp_path) == ["p0.nc"]


# --------------------------------------------------------------------------------------------- combined


def _combined_results():
    # p1 failed for every model; pooled attrs differ per item in input_bounds only.
    pooled = {
        "p0": make_pooled(seed=10, input_bounds=[0.0, 0.0, 1.0, 1.0]),
        "p1": None,
        "p2": make_pooled(seed=12, input_bounds=[5.0, 5.0, 6.0, 6.0]),
    }
    shared = {k: v for k, v in _attrs("pooled").items() if k != "input_bounds"}
    results = {
        "dofa": {"p0": make_grid(seed=1), "p1": None, "p2": make_grid(crs=CUSTOM_CRS, seed=3)},
        "clip": pooled,
        "tt": {"p0": make_grid(time=True, seed=4), "p2": make_grid(time=True, seed=5)},
        "pt": {"p0": make_pooled(time=True, seed=6), "p1": None, "p2": make_pooled(time=True, seed=7)},
    }
    return results, {"clip": shared}


@pytest.mark.parametrize("fmt", ["netcdf", "npz", "zarr"])
def test_combined_round_trip(tmp_path, fmt):
    results, shared = _combined_results()
    out = tmp_path / f"all.{ {'netcdf': 'nc'}.get(fmt, fmt) }"
    if fmt == "zarr":
        _write_zarr_combined(out, results, shared)
    else:
        assert write_combined(out, NAMES, results, fmt) == out
    assert _files(tmp_path) == [out.name]

    back = read_combined(out, fmt)
    assert sorted(back) == ["clip", "dofa", "pt", "tt"]
    stacked = back["clip"]
    assert isinstance(stacked, xr.DataArray)
    assert_same(stacked, _stacked_by_hand(results["clip"], shared["clip"]))
    assert list(stacked["item"].values) == NAMES
    assert np.isnan(stacked.sel(item="p1").values).all()
    np.testing.assert_array_equal(stacked.sel(item="p2").values, results["clip"]["p2"].values)
    for model in ("dofa", "tt", "pt"):
        assert isinstance(back[model], dict)
        present = {n: da for n, da in results[model].items() if da is not None}
        assert sorted(back[model]) == sorted(present)  # failed items are absent
        for name, expected in present.items():
            assert_same(back[model][name], expected)


def test_combined_stacks_only_uniform_1d_vectors(tmp_path):
    mixed = {"p0": make_pooled(dim=5), "p2": make_pooled(dim=7)}
    write_combined(tmp_path / "all.nc", NAMES, {"clip": mixed}, "netcdf")
    back = read_combined(tmp_path / "all.nc", "netcdf")
    assert isinstance(back["clip"], dict) and sorted(back["clip"]) == ["p0", "p2"]
    with pytest.raises(OptionError, match="not in `names`"):
        write_combined(tmp_path / "x.npz", NAMES, {"clip": {"p9": make_pooled()}}, "npz")


# --------------------------------------------------------------------------------------------- conventions


def test_zarr_convention_attrs_for_a_grid():
    da = make_grid(shape=(3, 4), origin=(500000.0, 4200000.0))
    attrs = conventions.zarr_convention_attrs(da)
    json.dumps(attrs)  # plain JSON, ready for zarr attributes
    # Computed independently: 160 m cells, top-left corner at the origin, 3 rows x 4 columns.
    assert attrs["proj:code"] == "EPSG:32629" and "proj:wkt2" not in attrs
    assert attrs["spatial:dimensions"] == ["y", "x"]
    assert attrs["spatial:transform"] == [160.0, 0.0, 500000.0, 0.0, -160.0, 4200000.0]
    assert attrs["spatial:shape"] == [3, 4]
    assert attrs["spatial:bbox"] == [500000.0, 4200000.0 - 3 * 160.0, 500000.0 + 4 * 160.0, 4200000.0]
    assert attrs["spatial:registration"] == "pixel"
    x_edges = da["x"].values - 80.0
    y_edges = da["y"].values + 80.0
    assert attrs["spatial:bbox"][0] == x_edges[0] and attrs["spatial:bbox"][3] == y_edges[0]
    assert attrs["geoemb:type"] == "pixel"
    assert attrs["geoemb:dimensions"] == 5
    assert attrs["geoemb:model"] == "dofa"
    assert attrs["geoemb:data_type"] == "float32"
    assert attrs["geoemb:gsd"] == 160.0
    assert attrs["geoemb:chip_layout"] == {"layout_type": "regular_grid", "chip_size": [224, 224], "stride": [224, 224]}
    uuids = {c["name"]: c["uuid"] for c in attrs["zarr_conventions"]}
    assert uuids == {
        "proj:": "f17cb550-5864-4468-aeb7-f3180cfb622f",
        "spatial:": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
        "geoemb:": "61c12cc5-0e28-4056-999a-480cf3fb7e4c",
    }


def test_zarr_convention_attrs_without_epsg_and_pooled():
    attrs = conventions.zarr_convention_attrs(make_grid(crs=CUSTOM_CRS))
    assert "proj:code" not in attrs and CRS.from_wkt(attrs["proj:wkt2"]) == CUSTOM_CRS
    pooled = conventions.zarr_convention_attrs(make_pooled(dim=7))
    assert all(k.startswith("geoemb:") for k in pooled if k != "zarr_conventions")
    assert [c["name"] for c in pooled["zarr_conventions"]] == ["geoemb:"]
    assert pooled["geoemb:dimensions"] == 7 and pooled["geoemb:type"] == "chip"


def test_formats_constant():
    assert FORMATS == ("zarr", "geotiff", "netcdf", "npz")
    assert formats._cog_blocksize(768) * formats._cog_blocksize(768) * 768 * 4 <= 32 * 2**20
