"""Precomputed embedding products as lazy xarray sources: Tessera, Google Satellite Embedding, Copernicus-Embed.

``open_precomputed(product, ...)`` returns a lazy DataArray ``embeddings`` with dims ``([time,] embedding, y, x)``
in the product's native CRS, dequantised, nodata as NaN. ``align_to_grid`` resamples one (lazily, nearest
neighbour) onto any :class:`~xrembed.geo.Grid`, which is how ``x.rsembed.embed("tessera", ...)`` puts a
product on the same cells as an on-the-fly model.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import xarray as xr

from ...errors import OptionError, UnknownModelError
from ...geo import Grid, assign_grid

#: product id -> "module:function" (modules in this package; imported on first use)
_PRODUCTS = {
    "tessera": "tessera:open_tessera",
    "gse": "gse:open_gse",
    "copernicus_embed": "copernicus_embed:open_copernicus_embed",
}
_ALIASES = {"gse_annual": "gse", "alphaearth": "gse", "aef": "gse", "copernicus": "copernicus_embed"}

__all__ = ["align_to_grid", "describe_product", "is_product", "list_products", "open_precomputed"]


def list_products() -> list[str]:
    """Ids of the precomputed products.

    Examples
    --------
    >>> list_products()
    ['copernicus_embed', 'gse', 'tessera']
    """
    return sorted(_PRODUCTS)


def is_product(name: str) -> bool:
    key = str(name).strip().lower()
    return _ALIASES.get(key, key) in _PRODUCTS


def _resolve(product: str) -> tuple[str, Any]:
    key = str(product).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _PRODUCTS:
        raise UnknownModelError(f"unknown product {product!r}; available: {list_products()}.")
    module_name, _, function = _PRODUCTS[key].partition(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return key, module, getattr(module, function)


def describe_product(product: str) -> dict[str, Any]:
    """What a product is: dims, resolution, CRS, years, dequantisation, nodata, sources, licence, attribution."""
    _, module, _ = _resolve(product)
    return dict(module.PRODUCT_INFO)


def open_precomputed(product: str, *, spatial=None, temporal=None, source=None, chunks=None) -> xr.DataArray:
    """Open a precomputed embedding product lazily over ``spatial`` (a BBox/PointBuffer) and ``temporal``.

    Parameters
    ----------
    product
        ``"tessera"``, ``"gse"`` (Google Satellite Embedding / AlphaEarth) or ``"copernicus_embed"``.
    spatial
        ``xrembed.BBox`` or ``xrembed.PointBuffer``; ``None`` opens the whole source.
    temporal
        ``xrembed.TemporalSpec`` (the years the product has; see :func:`describe_product`).
    source
        A local path or URL; ``None`` means the product's default public location.
    chunks
        Dask chunks (product-specific default).

    Examples
    --------
    >>> import xrembed
    >>> emb = xrembed.open_precomputed("tessera", spatial=xrembed.BBox(0.1, 52.1, 0.2, 52.2),
    ...                                temporal=xrembed.TemporalSpec.year(2024), source="tessera/")  # doctest: +SKIP
    """
    _, _, opener = _resolve(product)
    return opener(spatial=spatial, temporal=temporal, source=source, chunks=chunks)


def align_to_grid(product: xr.DataArray, grid: Grid) -> xr.DataArray:
    """Resample ``product`` lazily onto ``grid`` with nearest neighbour (no blending of embedding vectors).

    Each output cell takes the product vector at the cell centre; cells outside the product are NaN.
    """
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_reproject

    import odc.geo.xr  # noqa: F401  (registers .odc)

    target = GeoBox(grid.shape, grid.transform, grid.crs.to_wkt())
    src = product.astype("float32")
    resampled = xr_reproject(src, target, resampling="nearest", dst_nodata=np.nan)
    rename = {d: n for d, n in (("latitude", "y"), ("longitude", "x")) if d in resampled.dims}
    resampled = resampled.rename(rename).drop_vars(["spatial_ref", "y", "x"], errors="ignore")
    resampled = resampled.transpose(*[d for d in product.dims if d not in ("y", "x")], "y", "x")
    out = assign_grid(resampled, grid)
    out.name = "embeddings"
    out.attrs = dict(product.attrs)
    return out


def embed_product(obj, product: str, *, temporal=None, source=None, patch_size: int = 1, chunks=None) -> xr.DataArray:
    """``obj.rsembed.embed(product)``: the product over ``obj``'s extent, on ``obj``'s grid zoomed out by ``patch_size``."""
    from ...specs import BBox

    if not isinstance(patch_size, int) or patch_size < 1:
        raise OptionError(f"patch_size must be a positive integer, got {patch_size!r}.")
    grid = Grid.from_xarray(obj).zoom_out(patch_size)
    left, bottom, right, top = grid.bounds
    spatial = BBox(left, bottom, right, top, crs=grid.crs.to_wkt())
    data = open_precomputed(product, spatial=spatial, temporal=temporal, source=source, chunks=chunks)
    out = align_to_grid(data, grid)
    out.attrs.update({"resampling": "nearest", "aligned_to": "input grid" + (f" zoomed out {patch_size}x" if patch_size > 1 else "")})
    return out
