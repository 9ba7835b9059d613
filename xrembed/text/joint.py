"""``embed(..., space="joint")``: each grid cell's token mapped through the model's image head.

DOFA-CLIP's head is the attention pool applied to a one-token sequence (attention over one token has
weight 1, so this is the head's value projection, output projection and MLP on that token); RemoteCLIP's
is ``proj`` on the ``ln_post`` token. This is the same head tile-mode pooling applies to a mean token
(``engine.pool_head_block``), applied per cell: each cell becomes a vector of the image-text space, so a
text embedding can score it. It approximates what the whole-image embedding of that cell's patch would
be; the per-cell vectors see their context only through the transformer's attention, not through the
learned pooling weights.

Per cell, so chunk-invariant; a cell with no valid pixel (NaN token) stays NaN; the grid, CRS and
encoding are those of the token grid.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import engine


def joint_array(tokens, key, plan, pooled_dim: int):
    """``(..., D, y, x)`` grid tokens (numpy or dask) -> ``(..., pooled_dim, y, x)`` joint-space vectors."""
    moved = np.moveaxis(tokens, -3, -1) if not hasattr(tokens, "dask") else tokens.transpose(
        *range(tokens.ndim - 3), tokens.ndim - 2, tokens.ndim - 1, tokens.ndim - 3
    )
    if not hasattr(moved, "dask"):
        out = engine.pool_head_block(np.ascontiguousarray(moved), key=key, plan=plan)
        return np.moveaxis(out, -1, -3)
    moved = moved.rechunk({moved.ndim - 1: -1})
    out = moved.map_blocks(
        engine.pool_head_block, dtype=np.float32, meta=np.empty((0,) * moved.ndim, np.float32),
        chunks=moved.chunks[:-1] + ((pooled_dim,),), key=key, plan=plan, token=f"joint-{key.model_id}",
    )
    return out.transpose(*range(out.ndim - 3), out.ndim - 1, out.ndim - 3, out.ndim - 2)


def to_joint(out: xr.DataArray, key, plan, pooled_dim: int) -> xr.DataArray:
    """The joint-space version of an ``embed()`` result (a grid is mapped per cell; a pooled vector is
    already in the joint space). ``attrs["space"]`` becomes ``"joint"``."""
    if "y" in out.dims and "x" in out.dims:
        data = joint_array(out.transpose(..., "embedding", "y", "x").data, key, plan, pooled_dim)
        dims = tuple(d for d in out.dims if d not in ("embedding", "y", "x")) + ("embedding", "y", "x")
        coords = {name: c for name, c in out.coords.items() if "embedding" not in c.dims}
        joint = xr.DataArray(data, dims=dims, coords=coords, name=out.name)
        joint = joint.assign_coords(embedding=np.arange(pooled_dim)).transpose(*out.dims)
        joint.encoding = dict(out.encoding)
    else:
        joint = out.copy(deep=False)
    joint.attrs = dict(out.attrs, space="joint")
    return joint
