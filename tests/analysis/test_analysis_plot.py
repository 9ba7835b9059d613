"""xrembed.plot.pseudocolor(emb): a matplotlib figure of the RGB quicklook on the grid's extent, NaN transparent;
``import xrembed`` imports neither matplotlib nor scikit-learn, and ``xrembed.plot`` loads on first use."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import xrembed  # noqa: E402
from xrembed.analysis._deps import MissingDependencyError  # noqa: E402

from analysis_raster_helpers import make_grid  # noqa: E402


def test_import_xrembed_stays_light():
    code = (
        "import sys, xrembed; heavy = [m for m in ('matplotlib', 'sklearn', 'geopandas') if m in sys.modules];"
        "assert not heavy, heavy; p = xrembed.plot; assert 'matplotlib' not in sys.modules;"
        "assert callable(p.pseudocolor) and callable(xrembed.change)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pseudocolor_draws_the_quicklook_on_the_grid_extent():
    import matplotlib.pyplot as plt

    emb = make_grid(nan_cells=[(2, 3)], chunks={"y": 10, "x": 10})
    fig = xrembed.plot.pseudocolor(emb, seed=0)
    try:
        (image,) = fig.axes[0].get_images()
        left, bottom, right, top = emb.rio.bounds()
        assert tuple(image.get_extent()) == pytest.approx((left, right, bottom, top))
        rgba = np.asarray(image.get_array())
        assert rgba.shape == (24, 30, 4)
        np.testing.assert_array_equal(rgba[..., :3], emb.rsembed.to_rgb(seed=0).transpose("y", "x", "band").values)
        assert rgba[2, 3, 3] == 0 and (np.delete(rgba[..., 3].ravel(), 2 * 30 + 3) == 255).all()
        assert "EPSG:32629" in fig.axes[0].get_xlabel()
    finally:
        plt.close(fig)


def test_pseudocolor_into_given_axes_and_of_an_rgb():
    import matplotlib.pyplot as plt

    emb = make_grid()
    fig, ax = plt.subplots()
    try:
        assert xrembed.plot.pseudocolor(emb.rsembed.to_rgb(), ax=ax, title="t") is fig
        assert ax.get_title() == "t"
    finally:
        plt.close(fig)


def test_without_matplotlib_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "xrembed\[analysis\]"'):
        xrembed.plot.pseudocolor(make_grid(shape=(4, 4)))
