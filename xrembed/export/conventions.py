"""Zarr convention attributes (``proj:``, ``spatial:``, ``geoemb:``) for an embedding result.

The conventions and their registration objects, as published (checked 2026, via their spec READMEs and
``zarr-developers/geozarr-toolkit``'s pydantic models):

* ``proj:`` -- geo-proj, uuid ``f17cb550-5864-4468-aeb7-f3180cfb622f``,
  https://github.com/zarr-experimental/geo-proj/blob/v1/README.md (``proj:code`` when an authority code
  exists, else ``proj:wkt2`` or ``proj:projjson``; at least one is required).
* ``spatial:`` -- uuid ``689b58e2-cf7b-45e0-9fff-9cfc0883d6b4``,
  https://github.com/zarr-conventions/spatial/blob/v1/README.md (``spatial:dimensions`` in (y, x) order,
  ``spatial:transform`` in rasterio/affine order ``[a, b, c, d, e, f]``, ``spatial:shape`` ``[height,
  width]``, ``spatial:bbox`` ``[xmin, ymin, xmax, ymax]``, ``spatial:registration`` ``"pixel"`` =
  PixelIsArea).
* ``geoemb:`` -- geo-embeddings, uuid ``61c12cc5-0e28-4056-999a-480cf3fb7e4c``,
  https://github.com/geo-embeddings/embeddings-zarr-convention/blob/v1/README.md (required: ``type``
  ``"pixel"|"chip"``, ``dimensions``, ``model``, ``source_data``, ``data_type``; optional ``gsd`` in metres,
  ``chip_layout`` ``{layout_type, chip_size: [h, w], stride: [y, x]}``, required for ``"chip"``). Its
  scope is the *group*: put these attributes on the group that holds the ``embeddings`` array.

Choices made here (not dictated by the specs):

* A grid result (one vector per ViT patch) is a ``"pixel"`` embedding on the coarse output grid; ``gsd`` is
  its cell size. When the result was tiled (``input_prep="tile"``) and its attrs name the model's
  ``image_size``, ``chip_layout`` records the ``image_size`` x ``image_size`` tiles on the patch lattice.
* A pooled result (one vector per item) is a ``"chip"`` embedding whose chip is the item's region:
  ``chip_layout.layout_type`` is ``"irregular"`` and ``chip_size`` the model input size, when known.
* ``geoemb:model`` is the model id (e.g. ``"dofa"``), not a URL; ``geoemb:source_data`` is written only when
  the result's attrs carry a ``source_data`` entry (xrembed does not know where the pixels came from).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from pyproj import CRS

from ..geo import metres_per_unit

__all__ = [
    "GEOEMB_CONVENTION",
    "PROJ_CONVENTION",
    "SPATIAL_CONVENTION",
    "zarr_convention_attrs",
]

PROJ_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/zarr-experimental/geo-proj/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-experimental/geo-proj/blob/v1/README.md",
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "name": "proj:",
    "description": "Coordinate reference system information for geospatial data",
}
SPATIAL_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "name": "spatial:",
    "description": "Spatial coordinate information",
}
GEOEMB_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/geo-embeddings/embeddings-zarr-convention/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/geo-embeddings/embeddings-zarr-convention/blob/v1/README.md",
    "uuid": "61c12cc5-0e28-4056-999a-480cf3fb7e4c",
    "name": "geoemb:",
    "description": "Geoembeddings convention for geospatial embedding arrays with model provenance",
}


def zarr_convention_attrs(da: xr.DataArray) -> dict[str, Any]:
    """Zarr convention attributes describing the embedding result ``da``.

    For a grid result (dims ending in ``y``, ``x``): ``proj:``, ``spatial:`` and ``geoemb:`` attributes
    plus their ``zarr_conventions`` registration list. For a pooled result: ``geoemb:`` only. The CRS and
    transform are read with ``da.rio.crs`` and ``da.rio.transform()``; every value is plain JSON.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from affine import Affine
    >>> from pyproj import CRS
    >>> from xrembed.geo import Grid, assign_grid
    >>> grid = Grid((2, 3), Affine(160.0, 0.0, 500000.0, 0.0, -160.0, 4200000.0), CRS.from_epsg(32629))
    >>> da = assign_grid(xr.DataArray(np.zeros((4, 2, 3), "float32"), dims=("embedding", "y", "x")), grid)
    >>> attrs = zarr_convention_attrs(da.assign_attrs(model="dofa"))
    >>> attrs["proj:code"], attrs["spatial:bbox"], attrs["geoemb:dimensions"]
    ('EPSG:32629', [500000.0, 4199680.0, 500480.0, 4200000.0], 4)
    """
    is_grid = "y" in da.dims and "x" in da.dims
    attrs: dict[str, Any] = {}
    conventions = []
    if is_grid:
        crs = da.rio.crs
        transform = da.rio.transform()
        height, width = int(da.sizes["y"]), int(da.sizes["x"])
        if crs is not None:
            attrs.update(_proj_attrs(CRS.from_user_input(crs)))
            conventions.append(dict(PROJ_CONVENTION))
        xs = [transform.c, transform.c + width * transform.a + height * transform.b]
        ys = [transform.f, transform.f + width * transform.d + height * transform.e]
        attrs.update(
            {
                "spatial:dimensions": ["y", "x"],
                "spatial:transform": [float(v) for v in tuple(transform)[:6]],
                "spatial:shape": [height, width],
                "spatial:bbox": [float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))],
                "spatial:registration": "pixel",
            }
        )
        conventions.append(dict(SPATIAL_CONVENTION))
    attrs.update(_geoemb_attrs(da, is_grid))
    conventions.append(dict(GEOEMB_CONVENTION))
    return {"zarr_conventions": conventions, **attrs}


def _proj_attrs(crs: CRS) -> dict[str, str]:
    epsg = crs.to_epsg()
    if epsg is not None:
        return {"proj:code": f"EPSG:{epsg}"}
    return {"proj:wkt2": crs.to_wkt("WKT2_2019")}


def _geoemb_attrs(da: xr.DataArray, is_grid: bool) -> dict[str, Any]:
    source = da.attrs
    image_size = _plain_int(source.get("image_size"))
    attrs: dict[str, Any] = {
        "geoemb:type": "pixel" if is_grid else "chip",
        "geoemb:dimensions": int(da.sizes["embedding"]) if "embedding" in da.dims else int(da.shape[-1]),
        "geoemb:model": str(source.get("model", da.name or "unknown")),
        "geoemb:data_type": str(np.dtype(da.dtype)),
    }
    if source.get("source_data"):
        attrs["geoemb:source_data"] = str(source["source_data"])
    if is_grid:
        gsd = _gsd_metres(da)
        if gsd is not None:
            attrs["geoemb:gsd"] = gsd
        if image_size is not None and source.get("input_prep", "tile") == "tile":
            attrs["geoemb:chip_layout"] = {
                "layout_type": "regular_grid",
                "chip_size": [image_size, image_size],
                "stride": [image_size, image_size],
            }
    else:
        layout: dict[str, Any] = {"layout_type": "irregular"}
        if image_size is not None:
            layout["chip_size"] = [image_size, image_size]
        attrs["geoemb:chip_layout"] = layout
    return attrs


def _gsd_metres(da: xr.DataArray) -> float | None:
    """Cell size in metres: the transform's x step in CRS units (degrees scaled at the grid's centre)."""
    crs = da.rio.crs
    transform = da.rio.transform()
    size = abs(float(transform.a))
    if crs is None:
        return size
    crs = CRS.from_user_input(crs)
    lat = float(np.mean(np.asarray(da["y"].values, dtype="float64"))) if crs.is_geographic else 0.0
    return size * metres_per_unit(crs, lat)


def _plain_int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
