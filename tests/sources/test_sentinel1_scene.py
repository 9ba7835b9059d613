"""TerraFM's Sentinel-1 path on the real Sentinel-1 GRD scene in ../shared/data.

The GRD is georeferenced only by ground control points; ``open_raster`` warps it lazily to its UTM zone. Its values are uncalibrated amplitude DN; sigma0-like power is DN^2 up to a constant (see the
data README), and the constant below puts the median VV near typical land backscatter (about -15 dB).
"""

import numpy as np
import pytest
from affine import Affine

import xrembed
from xrembed import errors

from shared_paths import SHARED_DATA

S1_SCENE = SHARED_DATA / "S1A_IW_GRDH_1SDV_20180716T004042_FD5B" / "measurement"
DN_TO_POWER = 1.0 / 1000.0**2


@pytest.fixture(scope="module")
def s1_power():
    if not S1_SCENE.is_dir():
        pytest.fail(f"the shared Sentinel-1 scene is missing at {S1_SCENE}")
    dn = xrembed.open_raster(S1_SCENE, bands=["VV", "VH"])  # GCP-only: warped lazily to its UTM zone
    return dn**2 * DN_TO_POWER


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
