"""Overlapping tiles (``InputPrepSpec.tile(tile_stride=...)`` below the tile size): each output cell is
taken from the tile whose centre is nearest, so cells sit further from a tile border than with abutting
tiles.

The tiles start on the global lattice of multiples of the stride. They are grouped by their start modulo
the tile size; each group is the ordinary abutting layout of the raster cut at that offset, run by the
ordinary engine (lazy, chunk-invariant), and the grids are merged cell by cell with the owners of
:func:`xrembed.tiling.overlap_owners`, which depend on the raster size only. With a stride of half a tile
the model runs on four times the tiles.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .errors import OptionError
from .geo import spatial_dims
from .tiling import overlap_owners, requested_tile_size

__all__ = ["embed_overlapping", "stride_tokens"]


def stride_tokens(
    model: str, tile_stride: int, variant: str | None = None, tile_size: int | None = None
) -> tuple[int, int, int]:
    """``(stride in patches, tile in patches, patch size)`` for ``tile_stride`` pixels on tiles of ``tile_size``
    pixels (``None``: the model's own size), or ``OptionError``."""
    from .models.registry import get_adapter

    adapter = get_adapter(model, variant)
    v = adapter.variant
    size = v.image_size if tile_size is None else adapter.check_tile_size(tile_size)
    tile = size // v.patch_size
    if tile_stride % v.patch_size or tile % (tile_stride // v.patch_size):
        divisors = [d * v.patch_size for d in range(1, tile + 1) if tile % d == 0]
        raise OptionError(
            f"InputPrepSpec.tile(tile_stride={tile_stride}): overlapping tiles of {model!r} start on its "
            f"{v.patch_size} px patch lattice and repeat every tile ({size} px); pass a stride in "
            f"{divisors[:-1]} (or None for abutting tiles)."
        )
    return tile_stride // v.patch_size, tile, v.patch_size


def embed_overlapping(obj: xr.DataArray | xr.Dataset, model: str, *, tile_stride: int, **kwargs) -> xr.DataArray:
    """The ``(..., embedding, y, x)`` grid of ``model`` over ``obj`` from tiles ``tile_stride`` pixels apart.

    ``kwargs`` are ``.rsembed.embed`` keywords (``output`` must be a grid; ``tile_size`` sets the tiles, which
    ``tile_stride`` must divide into whole patches). Lazy where ``obj`` is.

    Examples
    --------
    >>> from xrembed.testing import synthetic_raster
    >>> grid = embed_overlapping(synthetic_raster((64, 64)), "dofa-tiny", tile_stride=16, weights="random")
    >>> grid.sizes["y"], grid.attrs["tile_stride"]
    (8, 16)
    """
    output = kwargs.get("output", "grid")
    if getattr(output, "mode", output) != "grid":
        raise OptionError(
            "overlapping tiles (tile_stride below the tile size) choose which tile each grid cell comes from; "
            "a pooled vector has no cells: use output=OutputSpec.grid(), or tile_stride=None for pooled output."
        )
    # an InputPrepSpec's tile size survives the switch to plain tiles (input_prep="tile") as tile_size=
    size = requested_tile_size(kwargs.get("input_prep"), kwargs.get("tile_size"))
    stride, tile, patch = stride_tokens(model, tile_stride, kwargs.get("variant"), size)
    kwargs = {**kwargs, "input_prep": "tile", "tile_size": size}
    full = obj.rsembed.embed(model, **kwargs)  # offset (0, 0): it also defines the output grid
    owners_y = np.asarray(overlap_owners(full.sizes["y"], tile, stride))
    owners_x = np.asarray(overlap_owners(full.sizes["x"], tile, stride))
    y_dim, x_dim = spatial_dims(obj)
    out = full
    for oy in sorted(set(owners_y.tolist())):
        for ox in sorted(set(owners_x.tolist())):
            if (oy, ox) == (0, 0) or not ((owners_y == oy)[:, None] & (owners_x == ox)[None, :]).any():
                continue
            cut = obj.isel({y_dim: slice(oy * patch, None), x_dim: slice(ox * patch, None)})
            part = cut.rsembed.embed(model, **kwargs)
            # put the part back on the full grid by position (its cells are the full grid's cells >= offset)
            part = part.pad(y=(oy, 0), x=(ox, 0)).assign_coords(y=full["y"], x=full["x"])
            mask = xr.DataArray((owners_y == oy)[:, None] & (owners_x == ox)[None, :], dims=("y", "x"),
                                coords={"y": full["y"], "x": full["x"]})
            out = xr.where(mask, part, out, keep_attrs=True)
    out = out.transpose(*full.dims)
    if full.chunks is not None:  # the padded parts leave ragged chunks: back to the full grid's
        out = out.chunk(full.chunksizes)
    out.attrs = {**full.attrs, "tile_stride": int(tile_stride), "tile_ownership": "nearest tile centre"}
    out = out.rio.write_crs(full.rio.crs).rio.write_transform(full.rio.transform())
    return out.rename(full.name)
