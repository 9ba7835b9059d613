"""The exact model input of one export unit, for ``ExportConfig(save_inputs=True)``.

The input is what the model reads: the source's bands after selection, in the model's order, before any
normalisation (raw reflectance, backscatter, ...), on the input's own grid (north-up), with missing pixels
NaN. It is lazy: building it reads no pixels; writing it reads the source (a second read of the ROI for
Earth Engine, as nothing is cached between the model pass and the write).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .formats import INPUT_VAR


def model_input(obj: xr.DataArray | xr.Dataset, model: str, kwargs: Mapping[str, Any]) -> xr.DataArray:
    """``([time,] band, y, x)`` DataArray ``inputs`` of what ``model`` reads from ``obj`` with ``embed()``
    keywords ``kwargs``: bands named and in model order, the input's CRS and transform written.

    Examples
    --------
    >>> from xrembed.testing import synthetic_raster
    >>> da = synthetic_raster((16, 16))
    >>> inp = model_input(da, "dofa-tiny", {"weights": "random"})
    >>> inp.dims, inp.sizes["band"], inp.rio.crs == da.rio.crs
    (('band', 'y', 'x'), 9, True)
    """
    from .. import embedding
    from ..options import EmbedOptions

    prepared = embedding._prepare(obj, model, EmbedOptions.from_kwargs(dict(kwargs), where="export_batch"),
                                  resolve=False)
    data = prepared.data
    if "time" in data.dims and data.sizes["time"] == 1:  # a composite: (band, y, x), as its embedding
        data = data.squeeze("time")
    if data.chunks is not None:  # regular chunks for the stores (padding at a raster edge leaves ragged ones)
        data = data.chunk({**{d: -1 for d in data.dims if d not in ("y", "x")}, "y": 256, "x": 256})
    grid = prepared.grid
    # object strings: Zarr v3 stores them as variable-length strings (fixed-width ones are not yet stable there)
    data = data.assign_coords(band=np.array(list(prepared.plan.bands), dtype=object))
    data = data.drop_vars([c for c in data.coords if c not in data.dims and c not in ("time",)], errors="ignore")
    data = data.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    data.attrs = {"model": prepared.adapter.model_id, "variant": prepared.adapter.variant.name,
                  "bands": list(prepared.plan.bands), "content": "model input: selected bands before normalisation"}
    return data.rename(INPUT_VAR)
