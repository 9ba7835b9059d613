"""TerraFM's Sentinel-1 path on the real Sentinel-1 GRD scene in ../shared/data.

The GRD is georeferenced only by ground control points, so it is warped lazily (rasterio WarpedVRT) to its
UTM zone here. Its values are uncalibrated amplitude DN; sigma0-like power is DN^2 up to a constant (see the
data README), and the constant below puts the median VV near typical land backscatter (about -15 dB).
"""

import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr
from affine import Affine
from rasterio.vrt import WarpedVRT

from xrembed import errors

from conftest import SHARED_DATA

S1_SCENE = SHARED_DATA / "S1A_IW_GRDH_1SDV_20180716T004042_FD5B" / "measurement"
DN_TO_POWER = 1.0 / 1000.0**2


@pytest.fixture(scope="module")
def s1_power():
    if not S1_SCENE.is_dir():
        pytest.fail(f"the shared Sentinel-1 scene is missing at {S1_SCENE}")
    bands = []
    for pol in ("vv", "vh"):
        src = rasterio.open(S1_SCENE / f"iw-{pol}.tiff")
        vrt = WarpedVRT(src, src_crs=src.gcps[1], crs="EPSG:32643", nodata=0)
        bands.append(rioxarray.open_rasterio(vrt, masked=True, chunks={"y": 512, "x": 512}))
    dn = xr.concat(bands, dim="band").assign_coords(band=["VV", "VH"])
    return (dn**2 * DN_TO_POWER).rio.write_crs("EPSG:32643")


def test_terrafm_s1_on_the_real_scene(s1_power):
    crop = s1_power.isel(y=slice(300, 600), x=slice(500, 800))
    emb = crop.rsembed.embed("terrafm", modality="s1", weights="random")
    assert emb.rio.crs.to_epsg() == 32643
    assert emb.rio.transform() == crop.rio.transform(recalc=True) @ Affine.scale(16)
    assert emb.shape == (768, 19, 19)
    values = emb.compute().values
    valid = np.isfinite(crop.values).all(axis=0)
    has_data = valid.reshape(-1).any()
    assert has_data and np.isfinite(values).any()
    resized = crop.rsembed.embed("terrafm", modality="s1", weights="random", input_prep="resize")
    assert resized.shape == (768, 14, 14) and resized.rio.bounds() == pytest.approx(crop.rio.bounds())


def test_terrafm_s1_refuses_db_and_raw_amplitude(s1_power):
    crop = s1_power.isel(y=slice(300, 400), x=slice(500, 600))
    with pytest.raises(errors.InputRangeError, match="10 \\*\\* \\(x / 10\\)"):
        (10 * np.log10(crop)).rsembed.embed("terrafm", modality="s1", weights="random").compute()
    with pytest.raises(errors.InputRangeError):
        np.sqrt(crop / DN_TO_POWER).rsembed.embed("terrafm", modality="s1", weights="random").compute()
