"""The export the kill-and-resume tests run (shared by the test and its child process)."""

from pyproj import Transformer

import xrembed

OUTPUT = xrembed.OutputSpec.pooled()
MODELS = [
    xrembed.ExportModelRequest.configure("dofa-tiny", weights="random", input_prep="tile"),
    xrembed.ExportModelRequest.configure(
        "dofa-tiny", label="tiny-grid", weights="random", input_prep="resize", output="grid"
    ),
]


def spatials(n: int = 16) -> list:
    """``n`` ROIs on the bundled sample (and one off it, which fails and is recorded as failed)."""
    left, bottom, right, top = 199980.0, 2755220.0, 244780.0, 2800020.0  # the sample's bounds (EPSG:32629)
    to_lonlat = Transformer.from_crs("EPSG:32629", "EPSG:4326", always_xy=True)
    rois = []
    for k in range(n):
        fx, fy = 0.15 + 0.7 * ((k * 7) % n) / n, 0.15 + 0.7 * ((k * 3) % n) / n
        lon, lat = to_lonlat.transform(left + (right - left) * fx, bottom + (top - bottom) * fy)
        rois.append(xrembed.PointBuffer(lon, lat, 1600 + 800 * (k % 3)))
    return rois + [xrembed.PointBuffer(10.0, 10.0, 500.0)]
