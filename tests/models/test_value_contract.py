"""The value contract of ``embed()``: nodata per band, robust value checks, dtypes, wavelengths, duplicated
bands, empty inputs and option types. Every refusal is raised by ``embed()`` itself (from metadata), or,
for value checks that need pixels, by the compute."""

import re

import numpy as np
import pytest
import xarray as xr

from xrembed import errors
from xrembed.models import checks
from xrembed.models.dofa import DEFAULT_BANDS
from xrembed.testing import synthetic_raster

TINY = {"weights": "random"}


@pytest.fixture
def raster():
    return synthetic_raster((48, 48), seed=7)


def _as_dataset(da: xr.DataArray) -> xr.Dataset:
    """One variable per band, keeping the CRS (the layout of `open_dataset` / xee)."""
    return xr.Dataset({str(b): da.sel(band=b).drop_vars("band") for b in da["band"].values})


# -- 1. nodata per band ----------------------------------------------------------------------------


def test_fill_value_declared_on_a_later_dataset_variable_is_nodata(raster):
    # Fill only in B03 (the second picked band), declared only on B03: those pixels are invalid.
    with_fill = raster.copy()
    with_fill[1, :16, :16] = -9999
    ds = _as_dataset(with_fill)
    ds["B03"].attrs["_FillValue"] = -9999
    with_nan = raster.copy()
    with_nan[1, :16, :16] = np.nan
    expected = with_nan.rsembed.embed("dofa-tiny", **TINY).values
    got = ds.rsembed.embed("dofa-tiny", **TINY).values
    assert np.isnan(got[:, :2, :2]).all()  # 16 px = two 8 px cells of dofa-tiny, all fill
    np.testing.assert_allclose(got, expected, atol=1e-6, equal_nan=True)


def test_each_dataset_variable_keeps_its_own_nodata(raster):
    data = raster.copy()
    b02, b04 = DEFAULT_BANDS.index("B02"), DEFAULT_BANDS.index("B04")
    data[b02, :8, :8] = 0  # B02 uses 0 as fill
    data[b04, 8:16, 8:16] = 65535  # B04 uses 65535; 0 is a real value there
    data[b04, 40:48, 40:48] = 0
    ds = _as_dataset(data)
    ds["B02"].attrs["_FillValue"] = 0
    ds["B04"].attrs["nodata"] = 65535
    emb = ds.rsembed.embed("dofa-tiny", **TINY).values
    assert np.isnan(emb[:, 0, 0]).all() and np.isnan(emb[:, 1, 1]).all()
    assert np.isfinite(emb[:, 5, 5]).all()  # B04 == 0 is not B04's nodata


def test_per_band_nodata_sequence_in_input_order(raster):
    data = raster.copy()
    data[0, :8, :8] = -1
    data[3, 8:16, 8:16] = 0
    data[3, 40:48, 40:48] = -1  # -1 is nodata of band 0 only
    nodata = [-1, None, None, 0] + [None] * (len(DEFAULT_BANDS) - 4)
    emb = data.rsembed.embed("dofa-tiny", nodata=nodata, **TINY).values
    assert np.isnan(emb[:, 0, 0]).all() and np.isnan(emb[:, 1, 1]).all()
    assert np.isfinite(emb[:, 5, 5]).all()


def test_user_nodata_scalar_applies_to_every_band(raster):
    data = raster.copy()
    data[5, :8, :8] = 42.0
    emb = _as_dataset(data).rsembed.embed("dofa-tiny", nodata=42.0, **TINY).values
    assert np.isnan(emb[:, 0, 0]).all() and np.isfinite(emb[:, 1, 1]).all()


@pytest.mark.parametrize("bad", ["abc", "-9999", [1, 2], [0, "x"] + [0] * 10, True, {"B04": "zero"}])
def test_bad_nodata_is_refused_at_embed_time(raster, bad):
    with pytest.raises(errors.OptionError, match="nodata"):
        raster.chunk({"y": 16}).rsembed.embed("dofa-tiny", nodata=bad, **TINY)


def test_nodata_mapping_by_band_name(raster):
    data = raster.copy()
    data[DEFAULT_BANDS.index("B04"), :8, :8] = -5
    data[DEFAULT_BANDS.index("B03"), 8:16, 8:16] = -5  # not B03's nodata
    emb = data.rsembed.embed("dofa-tiny", nodata={"B4": -5}, **TINY).values
    assert np.isnan(emb[:, 0, 0]).all() and np.isfinite(emb[:, 1, 1]).all()


def test_rasterio_style_per_band_fill_values(raster):
    data = raster.copy()
    data[1, :8, :8] = 7
    data.attrs["_FillValue"] = tuple([0.0, 7.0] + [0.0] * (len(DEFAULT_BANDS) - 2))
    emb = data.rsembed.embed("dofa-tiny", **TINY).values
    assert np.isnan(emb[:, 0, 0]).all() and np.isfinite(emb[:, 1, 1]).all()


def test_undeclared_nodata_attribute_that_is_not_a_number_is_refused(raster):
    data = raster.copy()
    data.attrs["nodata"] = "none"
    with pytest.raises(errors.OptionError, match="nodata="):
        data.rsembed.embed("dofa-tiny", **TINY)


def test_nodata_is_per_band_in_the_batch_signature(raster):
    from xrembed import embedding
    from xrembed.options import EmbedOptions

    per_band = EmbedOptions(nodata=[0] + [None] * (len(DEFAULT_BANDS) - 1), weights="random")
    a = embedding._prepare(raster, "dofa-tiny", per_band)
    b = embedding._prepare(raster, "dofa-tiny", per_band.replace(nodata=0))
    assert a.signature() != b.signature()
    hash(a.signature())


def test_temporal_model_masks_each_frame_per_band():
    from xrembed.models.prithvi import DEFAULT_BANDS as HLS

    # Prithvi reads time as channels; band 0's fill must mask band 0 of every frame, not channel 0 only.
    da = synthetic_raster((32, 32), bands=HLS, times=2, seed=1)
    da[1, 0, :16, :16] = -1
    from xrembed.options import EmbedOptions

    prepared = __import__("xrembed").embedding._prepare(
        da, "prithvi", EmbedOptions(nodata=[-1, None, None, None, None, None]), resolve=False
    )
    from xrembed import engine

    folded = np.asarray(prepared.data.values).reshape(1, 12, 32, 32)
    nodata = prepared.nodata * 2
    _, valid = engine._as_images(folded, nodata)
    assert not valid[0, :16, :16].any() and valid[0, 16:, 16:].all()


# -- 2. robust value checks ------------------------------------------------------------------------


def test_one_fill_pixel_does_not_hide_normalised_data():
    pixels = np.random.default_rng(0).uniform(0, 0.5, (1, 3, 64, 64)).astype("f4")
    pixels[0, :, 0, 0] = 65535
    with pytest.raises(errors.InputRangeError, match="normalised"):
        checks.check_raw_reflectance(pixels, "dofa")


def test_normalised_raster_with_a_fill_pixel_is_refused_by_embed(raster):
    data = raster / 10000.0
    data[:, 0, 0] = 65535
    with pytest.raises(errors.InputRangeError, match="10000"):
        data.rsembed.embed("dofa-tiny", **TINY)


def test_db_data_as_reflectance_is_refused(raster):
    db = raster.copy(data=np.random.default_rng(1).uniform(-25, -5, raster.shape).astype("f4"))
    with pytest.raises(errors.InputRangeError, match="negative"):
        db.rsembed.embed("dofa-tiny", **TINY)


def test_raw_reflectance_with_dark_negative_pixels_passes():
    # Offset-corrected L2A can be slightly negative over dark water: a few negatives are fine.
    pixels = np.random.default_rng(2).uniform(100, 4000, (1, 3, 32, 32)).astype("f4")
    pixels[0, :, :4] = -50
    checks.check_raw_reflectance(pixels, "dofa")


def test_value_checks_ignore_nan_and_pass_all_invalid_blocks():
    nan = np.full((2, 3, 16, 16), np.nan, "f4")
    checks.check_raw_reflectance(nan, "dofa")
    checks.check_raw_reflectance(np.empty((0, 3, 4, 4), "f4"), "dofa")
    mostly_nan = nan.copy()
    mostly_nan[0, :, 0, :4] = 0.3
    with pytest.raises(errors.InputRangeError):
        checks.check_raw_reflectance(mostly_nan, "dofa")


def test_large_block_check_is_deterministic_and_sees_sparse_valid_values():
    big = np.full((1, 12, 512, 512), np.nan, "f4")
    big[0, :, 500:, 500:] = 0.2  # a small valid corner, normalised
    with pytest.raises(errors.InputRangeError):
        checks.check_raw_reflectance(big, "dofa")


def test_dofa_s1_linear_power_with_a_negative_fill_pixel_is_still_refused(tiny):
    rng = np.random.default_rng(3)
    linear = rng.uniform(0.001, 0.5, (2, 32, 32)).astype("f4")
    linear[:, 0, 0] = -9999
    da = synthetic_raster((32, 32), bands=["VV", "VH"]).copy(data=linear)
    with pytest.raises(errors.InputRangeError, match="dB"):
        da.rsembed.embed("dofa-tiny", **tiny)


def test_terrafm_s1_linear_power_with_a_few_negative_pixels_passes():
    from xrembed.models.terrafm import TerraFM

    adapter = TerraFM()
    plan = adapter.plan_inputs(["VV", "VH"])
    rng = np.random.default_rng(4)
    linear = rng.uniform(0.001, 0.5, (1, 2, 32, 32)).astype("f4")
    linear[0, :, 0, :3] = -9999  # an undeclared fill
    adapter.check_values(linear, plan)
    with pytest.raises(errors.InputRangeError, match="dB"):
        db = 10 * np.log10(rng.uniform(0.001, 0.5, (1, 2, 32, 32))).astype("f4")
        db[0, :, 0, 0] = 5.0
        adapter.check_values(db, plan)


# -- 3. dtypes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bool", "complex64", "int8", "datetime64[ns]", "object", "U8"])
def test_unusable_dtypes_are_refused_at_embed_time(raster, dtype):
    data = raster.astype(dtype).chunk({"y": 16})
    with pytest.raises(errors.DTypeError, match=re.escape(str(np.dtype(dtype)))):
        data.rsembed.embed("dofa-tiny", **TINY)


def test_uint8_quicklook_is_refused_for_reflectance_models(raster):
    quicklook = (raster / 10000 * 255).astype("uint8").chunk({"y": 16})
    with pytest.raises(errors.DTypeError, match="8-bit"):
        quicklook.rsembed.embed("dofa-tiny", **TINY)


def test_uint8_is_refused_for_sar():
    da = synthetic_raster((32, 32), bands=["VV", "VH"]).astype("uint8")
    with pytest.raises(errors.DTypeError, match="uint8"):
        da.rsembed.embed("dofa-tiny", **TINY)


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint16", "int16", "int32", "uint32", "int64"])
def test_numeric_dtypes_are_accepted(raster, dtype):
    emb = raster.astype(dtype).rsembed.embed("dofa-tiny", **TINY)
    assert np.isfinite(emb.values).all()


def test_each_dataset_variable_dtype_is_checked(raster):
    ds = _as_dataset(raster)
    ds["B05"] = ds["B05"] > 3000
    with pytest.raises(errors.DTypeError, match="B05"):
        ds.rsembed.embed("dofa-tiny", **TINY)
    ds = _as_dataset(raster)
    ds["extra"] = ds["B05"] > 3000  # not a picked band: ignored
    assert ds.rsembed.embed("dofa-tiny", **TINY).shape[0] == 32


# -- 4. wavelengths --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["dofa-tiny", "dofa_clip"])
def test_wavelengths_in_nanometres_are_refused(model):
    da = synthetic_raster((32, 32), bands=["B04", "B03", "B02"])
    with pytest.raises(errors.WavelengthError, match="nanometres"):
        da.rsembed.embed(model, wavelengths=[665, 560, 490], weights="random")


@pytest.mark.parametrize("waves", [["0.665", "0.56", "0.49"], "abc", [0.665, None, 0.49], [True, 0.56, 0.49], 0.665])
def test_non_numeric_wavelengths_are_refused(waves):
    da = synthetic_raster((32, 32), bands=["B04", "B03", "B02"])
    with pytest.raises(errors.WavelengthError, match="micrometres"):
        da.rsembed.embed("dofa-tiny", wavelengths=waves, **TINY)


def test_plausible_wavelengths_pass():
    waves = checks.check_wavelengths(np.array([0.665, 10.9, 5.405]), ["a", "b", "c"])
    assert waves == (0.665, 10.9, 5.405) and all(type(w) is float for w in waves)


# -- 5. duplicated bands ---------------------------------------------------------------------------


def test_duplicated_input_band_names_are_refused():
    bands = list(DEFAULT_BANDS)
    bands[1] = "B04"  # B04 twice (and B03 missing)
    da = synthetic_raster((32, 32), bands=bands)
    with pytest.raises(errors.BandMismatchError, match="B04"):
        da.rsembed.embed("dofa-tiny", bands=["B04", "B02"], **TINY)


def test_two_spellings_of_one_band_in_a_dataset_are_refused(raster):
    ds = _as_dataset(raster)
    ds["B4"] = ds["B04"] + 1
    with pytest.raises(errors.BandMismatchError, match="more than once"):
        ds.rsembed.embed("dofa-tiny", **TINY)


@pytest.mark.parametrize("model", ["dofa-tiny", "remoteclip", "satmae", "scalemae", "terrafm"])
def test_duplicated_bands_keyword_is_refused(raster, model):
    with pytest.raises(errors.BandMismatchError, match="duplicate|more than once|once"):
        raster.rsembed.embed(model, bands=["B04", "B04", "B02"], weights="random")


# -- 6. empty inputs and option types --------------------------------------------------------------


@pytest.mark.parametrize("window", [{"y": slice(0, 0)}, {"x": slice(0, 0)}])
def test_empty_raster_is_refused(raster, window):
    with pytest.raises(errors.SpatialDimensionError, match="empty|0"):
        raster.isel(window).rsembed.embed("dofa-tiny", **TINY)


def test_zero_length_time_is_refused():
    da = synthetic_raster((32, 32), times=2).isel(time=slice(0, 0))
    with pytest.raises(errors.OptionError, match="time"):
        da.rsembed.embed("dofa-tiny", **TINY)


def test_empty_band_dimension_is_refused(raster):
    with pytest.raises(errors.BandMismatchError, match="band"):
        raster.isel(band=slice(0, 0)).rsembed.embed("dofa-tiny", bands=[], **TINY)


@pytest.mark.parametrize("device", [3.5, "tpu", ["cpu"], "meta", "cuda:banana"])
def test_bogus_device_is_an_option_error(raster, device):
    with pytest.raises(errors.OptionError, match="device"):
        raster.rsembed.embed("dofa-tiny", device=device, **TINY)


@pytest.mark.parametrize("kwargs", [{"batch_size": True}, {"batch_size": 2.0}, {"tiles_per_chunk": True},
                                    {"precision": None}, {"precision": 16}])
def test_option_types(raster, kwargs):
    with pytest.raises(errors.OptionError):
        raster.rsembed.embed("dofa-tiny", **kwargs, **TINY)


def test_numpy_integer_batch_size_is_accepted(raster):
    emb = raster.rsembed.embed("dofa-tiny", batch_size=np.int64(2), **TINY)
    assert np.isfinite(emb.values).all()


def test_a_whole_edge_of_undeclared_fill_does_not_hide_normalised_data():
    pixels = np.random.default_rng(5).uniform(0.01, 0.5, (1, 3, 64, 64)).astype("f4")
    pixels[0, :, :, :8] = 65535  # an eighth of the scene, fill that no attribute declares
    pixels[0, :, :4] = 0  # and a zero-filled strip
    with pytest.raises(errors.InputRangeError, match="normalised"):
        checks.check_raw_reflectance(pixels, "dofa")
    raw = np.random.default_rng(6).uniform(50, 4000, (1, 3, 64, 64)).astype("f4")
    raw[0, :, :40] = 0  # a mostly-zero-filled raw scene is still raw
    checks.check_raw_reflectance(raw, "dofa")
