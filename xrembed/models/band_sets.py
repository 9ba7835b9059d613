"""Band lists several families read (canonical names, see :mod:`xrembed.bands`)."""

from __future__ import annotations

#: Sentinel-1 dual polarisation.
S1_BANDS = ("VV", "VH")
#: Sentinel-2 true colour in R, G, B order.
S2_RGB_BANDS = ("B04", "B03", "B02")
