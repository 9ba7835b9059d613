"""Precomputed embedding products as lazy xarray sources: Tessera, Google Satellite Embedding, Copernicus-Embed.

``open_precomputed(product, ...)`` returns a lazy DataArray ``embeddings`` with dims ``([time,] embedding, y, x)``
in the product's native CRS, dequantised, nodata as NaN. ``align_to_grid`` resamples one (lazily, nearest
neighbour) onto any :class:`~xrembed.geo.Grid`, which is how ``x.rsembed.embed("tessera", ...)`` puts a
product on the same cells as an on-the-fly model (``patch_size=``, or ``like=`` any grid).

Every grid (native or aligned) describes itself as a model's does: ``embedding`` is ``0..D-1`` (integers; GSE's
band names are the extra coordinate ``embedding_name``), ``attrs`` are plain JSON values with ``model`` (the
product id) and ``gsd`` (metres), the values the exported ``geoemb:`` metadata carries; nodata is NaN,
recorded as ``encoding["_FillValue"]`` (what ``rio.nodata`` reads and the writers write).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine

from ...cache import jsonable
from ...errors import OptionError, UnknownModelError
from ...geo import Grid, assign_grid, grid_provenance, north_up, spatial_dims, with_nan_nodata
from ...options import EmbedOptions

#: product id -> "module:function" (modules in this package; imported on first use)
_PRODUCTS = {
    "tessera": "tessera:open_tessera",
    "gse": "gse:open_gse",
    "copernicus_embed": "copernicus_embed:open_copernicus_embed",
}
_ALIASES = {"gse_annual": "gse", "alphaearth": "gse", "aef": "gse", "copernicus": "copernicus_embed"}

__all__ = [
    "align_to_grid", "check_product_options", "describe_product", "embed_product", "grid_provenance", "is_product",
    "list_products", "open_precomputed", "pool_product", "product_output", "with_nan_nodata",
]


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
    key, _, opener = _resolve(product)
    out = opener(spatial=spatial, temporal=temporal, source=source, chunks=chunks)
    return _with_provenance(out, key, Grid.from_xarray(out))


def _with_provenance(out: xr.DataArray, key: str, grid: Grid | None) -> xr.DataArray:
    """``out`` with plain-JSON attrs, ``model`` = the product id and (for a grid) :func:`grid_provenance`."""
    out.attrs = {name: jsonable(value) for name, value in out.attrs.items()}
    out.attrs["model"] = key
    if grid is not None:
        out.attrs.update(grid_provenance(grid), output="grid")
        out = with_nan_nodata(out)
    return out


def align_to_grid(product: xr.DataArray, grid: Grid) -> xr.DataArray:
    """Resample ``product`` lazily onto ``grid`` with nearest neighbour (no blending of embedding vectors).

    Each output cell takes the product vector of the product cell containing the output cell's centre; cells
    outside the product are NaN. The output is chunked like a model's: spatial chunks of about dask's
    ``array.chunk-size``, all embedding values (and each time chunk of the product) in one chunk, so every
    task samples all bands of its window at once.
    """
    import dask.array as dsa

    y_dim, x_dim = spatial_dims(product)
    product = product.rename({y_dim: "y", x_dim: "x"}) if (y_dim, x_dim) != ("y", "x") else product
    lead = [d for d in product.dims if d not in ("y", "x")]
    product = product.transpose(*lead, "y", "x")
    source = Grid.from_xarray(product)
    data = product.data if hasattr(product.data, "dask") else dsa.from_array(np.asarray(product.data))
    data = data.astype(np.float32)
    if "embedding" in lead:
        data = data.rechunk({lead.index("embedding"): -1})
    lead_chunks = data.chunks[:-2]
    side = _chunk_side(4 * int(np.prod([max(c) for c in lead_chunks])))
    same_crs = source.crs == grid.crs
    rows = []
    for row0 in range(0, grid.shape[0], side):
        row = []
        for col0 in range(0, grid.shape[1], side):
            shape = (min(side, grid.shape[0] - row0), min(side, grid.shape[1] - col0))
            cells = Grid(shape, grid.transform * Affine.translation(col0, row0), grid.crs)
            row.append(_sample_chunk(data, lead_chunks, source, cells, same_crs))
        rows.append(row)
    array = dsa.block(rows)
    coords = {n: c for n, c in product.coords.items() if n != "spatial_ref" and set(c.dims) <= set(lead)}
    out = xr.DataArray(array, dims=(*lead, "y", "x"), coords=coords)
    out = assign_grid(out, grid)
    out.name = "embeddings"
    out.attrs = {**product.attrs, **grid_provenance(grid)}
    return with_nan_nodata(out)


def _chunk_side(bytes_per_cell: int) -> int:
    """Side of square output chunks holding about dask's ``array.chunk-size`` (at least 16 cells)."""
    import dask
    from dask.utils import parse_bytes

    budget = parse_bytes(dask.config.get("array.chunk-size", "128MiB"))
    return max(16, math.isqrt(max(1, budget // max(1, bytes_per_cell))))


def _source_indices(source: Grid, cells: Grid, same_crs: bool, rows=None, cols=None):
    """Fractional ``(row, col)`` in ``source`` of the centres of ``cells`` (all of them, or those at
    ``rows`` x ``cols`` when given, broadcast)."""
    height, width = cells.shape
    r = np.arange(height) if rows is None else np.asarray(rows)
    c = np.arange(width) if cols is None else np.asarray(cols)
    cc, rr = np.meshgrid(c + 0.5, r + 0.5)
    x, y = cells.transform * (cc, rr)
    if not same_crs:
        from pyproj import Transformer

        x, y = Transformer.from_crs(cells.crs, source.crs, always_xy=True).transform(x, y)
    col, row = ~source.transform * (np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return row, col


def _sample_chunk(data, lead_chunks, source: Grid, cells: Grid, same_crs: bool):
    """One output chunk: the source window under ``cells`` (sampled once, all bands) or NaN outside."""
    import dask.array as dsa

    height, width = cells.shape
    # The window from the cells on the chunk's edges (and a coarse interior lattice), one cell of margin:
    # a footprint's extremes lie on its edges for any smooth projection over a chunk.
    lattice = np.arange(0, max(height, width), max(8, max(height, width) // 16))
    edge_r = np.unique(np.r_[lattice[lattice < height], height - 1])
    edge_c = np.unique(np.r_[lattice[lattice < width], width - 1])
    row_a, col_a = _source_indices(source, cells, same_crs, rows=np.arange(height), cols=edge_c)
    row_b, col_b = _source_indices(source, cells, same_crs, rows=edge_r, cols=np.arange(width))
    rows, cols = np.r_[row_a.ravel(), row_b.ravel()], np.r_[col_a.ravel(), col_b.ravel()]
    finite = np.isfinite(rows) & np.isfinite(cols)
    src_h, src_w = source.shape
    if finite.any():
        r0, r1 = max(int(np.floor(rows[finite].min())) - 1, 0), min(int(np.floor(rows[finite].max())) + 2, src_h)
        c0, c1 = max(int(np.floor(cols[finite].min())) - 1, 0), min(int(np.floor(cols[finite].max())) + 2, src_w)
    else:
        r0 = r1 = c0 = c1 = 0
    chunks = (*lead_chunks, (height,), (width,))
    if r1 <= r0 or c1 <= c0:
        return dsa.full(tuple(sum(c) for c in chunks), np.nan, dtype=np.float32, chunks=chunks)
    window = data[..., r0:r1, c0:c1].rechunk({data.ndim - 2: -1, data.ndim - 1: -1})
    return dsa.map_blocks(
        _sample_block, window, chunks=chunks, dtype=np.float32, meta=np.empty((0,) * data.ndim, np.float32),
        source=source, cells=cells, same_crs=same_crs, origin=(r0, c0),
    )


def _sample_block(window: np.ndarray, *, source: Grid, cells: Grid, same_crs: bool, origin) -> np.ndarray:
    """Nearest-neighbour sampling of ``window`` (the source from cell ``origin``) at the centres of ``cells``."""
    row, col = _source_indices(source, cells, same_crs)
    with np.errstate(invalid="ignore"):
        row = np.floor(row) - origin[0]
        col = np.floor(col) - origin[1]
    inside = np.isfinite(row) & np.isfinite(col)
    inside &= (row >= 0) & (row < window.shape[-2]) & (col >= 0) & (col < window.shape[-1])
    out = np.full(window.shape[:-2] + cells.shape, np.nan, dtype=np.float32)
    out[..., inside] = window[..., row[inside].astype(np.intp), col[inside].astype(np.intp)]
    return out


#: ``embed()`` keywords that only a model reads, with the values that mean "not set" (accepted for a product).
#: Every model keyword of ``EmbedOptions`` is accepted at its default, so a keyword added there needs no
#: entry here; the rest are the functional API's own (``sensor=``, ``fetch=``) and defaults it spells otherwise.
_MODEL_ONLY: dict[str, tuple] = {
    **{name: (default,) for name, default in EmbedOptions().model_keywords().items() if name != "output"},
    "device": (None, "auto"), "input_prep": (None, "auto", "tile"), "sensor": (None,), "fetch": (None,),
}
_WHY = {
    "bands": "a product's vectors are read as published; only the input's grid is used, never its pixels",
    "input_prep": "a product is sampled (nearest neighbour) at its own cells, never resized",
    "sensor": "a product's vectors are read as published, from no sensor's imagery",
}
_WHY.update(dict.fromkeys(("wavelengths", "modality", "nodata"), _WHY["bands"]))
_WHY["fetch"] = _WHY["sensor"]


def check_product_options(product: str, **options) -> None:
    """Refuse model keywords that mean nothing for a precomputed product (no model runs, no pixel is read).

    Each keyword is accepted at its "not set" value only (``device="auto"``, ``precision="fp32"``, ...), so a
    request that would silently be ignored fails at once, naming the keyword.
    """
    import difflib

    for name, value in options.items():
        if name not in _MODEL_ONLY:
            known = [*_MODEL_ONLY, "output", "temporal", "source", "patch_size", "like"]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]}=?" if close else ""
            raise OptionError(
                f"{name}= is not a keyword of xrembed's embed functions.{hint} Precomputed products such as "
                f"{product!r} take only output=, temporal=, source= (and patch_size= or like= on an input grid)."
            )
        if not _is_unset(value, _MODEL_ONLY[name]):
            why = _WHY.get(name, "no model runs: the vectors are read from the product")
            raise OptionError(
                f"{name}={value!r} has no meaning for the precomputed product {product!r} ({why}); leave {name}= out "
                "(products take output=, temporal=, source=, patch_size= and like=)."
            )


def _is_unset(value, unset: tuple) -> bool:
    value = getattr(value, "mode", value)  # InputPrepSpec
    if isinstance(value, str):
        value = value.strip().lower()
    return any(value is u or (isinstance(value, type(u)) and not isinstance(value, bool) and value == u) for u in unset)


def product_output(output) -> str:
    """``"grid"`` or ``"pooled"`` from ``output=`` (a string or an ``OutputSpec``); anything else is refused."""
    from ...options import check_pooling

    check_pooling(output)
    mode = str(getattr(output, "mode", output)).strip().lower()
    if mode not in ("grid", "pooled"):
        raise OptionError(
            f"output={output!r} is not one of ['grid', 'pooled'] (for the precomputed products as for models)."
        )
    return mode


def pool_product(grid: xr.DataArray) -> xr.DataArray:
    """The mean of the valid vectors of ``grid`` over ``y, x``: NaN-aware, every valid cell counted once.

    This is the models' pooled output (a valid-area-weighted mean of the grid, cells of equal area); a cell is
    valid when all its embedding values are. Without any valid cell the vector is NaN.
    """
    valid = grid.notnull().all("embedding") if "embedding" in grid.dims else grid.notnull()
    count = valid.sum(("y", "x"))
    total = grid.where(valid, 0.0).sum(("y", "x"))
    pooled = (total / count.where(count > 0)).astype(np.float32)
    pooled = pooled.drop_vars("spatial_ref", errors="ignore").transpose(*[d for d in grid.dims if d in total.dims])
    pooled.name = grid.name
    cell_attrs = ("gsd", "_FillValue")  # a pooled vector has no cells (models' pooled attrs lack them too)
    pooled.attrs = {**{k: v for k, v in grid.attrs.items() if k not in cell_attrs}, "output": "pooled"}
    return pooled


def embed_product(
    obj, product: str, *, temporal=None, source=None, patch_size: int | None = None, like=None, chunks=None,
    output="grid", **model_options,
) -> xr.DataArray:
    """``obj.rsembed.embed(product)``: the product over ``obj``'s extent, on ``obj``'s grid zoomed out by
    ``patch_size`` or on exactly the grid of ``like`` (``output="grid"``), or its valid mean
    (``output="pooled"``).

    ``like`` is any DataArray or Dataset with a grid (a CRS and ``y``/``x`` coordinates), e.g. a model's
    output: the result has its CRS, transform, shape and ``x``/``y`` coordinates, cell for cell, whatever
    ``obj``'s grid is (``obj`` is then not read at all). ``like`` may be in another CRS than the product: each
    cell takes the product vector under its centre (nearest neighbour, the centre transformed to the
    product's CRS). ``like=`` with ``patch_size=`` is refused.

    ``model_options`` are the other ``embed()`` keywords: each must be at its default (see
    :func:`check_product_options`); they are checked before the product is opened.
    """
    from ...specs import BBox

    mode = product_output(output)
    check_product_options(product, **model_options)
    if like is not None:
        if patch_size is not None:
            raise OptionError(
                f"like= and patch_size= both choose the grid {product!r} is put on; pass one of them "
                "(like= gives exactly that grid, patch_size= zooms out the input's grid)."
            )
        if not isinstance(like, (xr.DataArray, xr.Dataset)):
            raise OptionError(
                f"like= must be an xarray DataArray or Dataset with a grid (e.g. a model's output), got "
                f"{type(like).__name__}."
            )
        grid = Grid.from_xarray(like)
        aligned_to = "like grid"
    else:
        patch_size = 1 if patch_size is None else patch_size
        if not isinstance(patch_size, int) or isinstance(patch_size, bool) or patch_size < 1:
            raise OptionError(f"patch_size must be a positive integer, got {patch_size!r}.")
        grid = Grid.from_xarray(north_up(obj)).zoom_out(patch_size)  # grids are north-up, as models' are
        aligned_to = "input grid" + (f" zoomed out {patch_size}x" if patch_size > 1 else "")
    left, bottom, right, top = grid.bounds
    spatial = BBox(left, bottom, right, top, crs=grid.crs.to_wkt())
    data = open_precomputed(product, spatial=spatial, temporal=temporal, source=source, chunks=chunks)
    out = align_to_grid(data, grid)
    if like is not None:  # the very coordinates of ``like`` (not recomputed from its transform)
        y_dim, x_dim = spatial_dims(like)
        out = out.assign_coords(y=("y", np.asarray(like[y_dim].values)), x=("x", np.asarray(like[x_dim].values)))
    out.attrs.update({"resampling": "nearest", "output": "grid", "aligned_to": aligned_to})
    return pool_product(out) if mode == "pooled" else out
