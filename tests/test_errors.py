"""Invariant 4: bad input is a clear xrembed error naming the fix, raised by embed() before any compute."""

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from xrembed import errors
from xrembed.testing import synthetic_raster


def _poisoned(da: xr.DataArray) -> xr.DataArray:
    """The same raster, but reading any pixel fails: proves the error comes before compute."""

    def explode(block):
        raise AssertionError("pixels were read")

    data = dsa.map_blocks(explode, dsa.zeros(da.shape, chunks=da.shape, dtype="f4"), dtype="f4", meta=np.empty((0,) * da.ndim, "f4"))
    return da.copy(data=data)


@pytest.fixture
def raster():
    return _poisoned(synthetic_raster((32, 32)))


@pytest.mark.parametrize(
    "kwargs, error, fix",
    [
        ({"bands": ["B04", "B03", "B99"]}, errors.BandMismatchError, "not in the input"),
        ({"wavelengths": [0.6] * 3}, errors.WavelengthError, "one wavelength"),
        ({"variant": "huge"}, errors.UnknownModelError, "choose one of"),
        ({"output": "mean"}, errors.OptionError, "not one of"),
        ({"input_prep": "crop"}, errors.OptionError, "not one of"),
        ({"precision": "int4"}, errors.OptionError, "not one of"),
        ({"precision": "fp16", "device": "cpu"}, errors.OptionError, "bf16"),
        ({"batch_size": 0}, errors.OptionError, "positive"),
        ({"modality": "hyperspectral"}, errors.OptionError, "modality"),
        ({"device": "cuda"}, errors.OptionError, "device='cpu'"),
        ({"weights": "/nonexistent/DOFA.pth"}, errors.WeightsError, "does not exist"),
    ],
)
def test_metadata_errors_come_before_compute(raster, kwargs, error, fix):
    kwargs = {"weights": "random", **kwargs}
    with pytest.raises(error, match=fix):
        raster.rsembed.embed("dofa-tiny", **kwargs)


def test_unknown_model(raster):
    with pytest.raises(errors.UnknownModelError, match="available"):
        raster.rsembed.embed("dofa-xxl")


def test_missing_band_names_the_fix(raster):
    with pytest.raises(errors.BandMismatchError, match=r"lacks \['B11', 'B12'\].*bands="):
        raster.sel(band=["B04", "B03", "B02", "B05", "B06", "B07", "B08"]).rsembed.embed("dofa-tiny", weights="random")


def test_unnamed_bands_need_names(raster):
    unnamed = raster.drop_vars("band")
    with pytest.raises(errors.BandMismatchError, match="bands="):
        unnamed.rsembed.embed("dofa-tiny", weights="random")
    with pytest.raises(errors.BandMismatchError, match="must name every one"):
        unnamed.rsembed.embed("dofa-tiny", weights="random", bands=["B04", "B03"])  # wrong channel count


def test_no_band_dimension(raster):
    with pytest.raises(errors.SpatialDimensionError, match="'band'"):
        raster.rename(band="channel").rsembed.embed("dofa-tiny", weights="random")


def test_missing_crs(raster):
    with pytest.raises(errors.MissingCRSError, match="write_crs"):
        raster.drop_vars("spatial_ref").rsembed.embed("dofa-tiny", weights="random")


def test_no_spatial_dims(raster):
    with pytest.raises(errors.SpatialDimensionError, match="rename"):
        raster.rename(y="row", x="col").rsembed.embed("dofa-tiny", weights="random")


def test_irregular_grid(raster):
    x = raster.x.values.copy()
    x[5] += 3
    with pytest.raises(errors.SpatialDimensionError, match="regular"):
        raster.assign_coords(x=x).rsembed.embed("dofa-tiny", weights="random")


def test_mixed_sar_and_optical(raster):
    mixed = raster.isel(band=[0, 1]).assign_coords(band=["VV", "B04"])
    with pytest.raises(errors.BandMismatchError, match="separately"):
        mixed.rsembed.embed("dofa-tiny", weights="random", bands=["VV", "B04"])


def test_errors_are_xrembed_errors():
    for name in errors.__all__:
        cls = getattr(errors, name)
        if issubclass(cls, Warning):
            assert cls in (errors.RandomWeightsWarning, errors.SlowPrecisionWarning), f"{name}: a warning class"
        else:
            assert issubclass(cls, errors.XrembedError)
