"""Helpers for tests and examples: synthetic georeferenced rasters, xee-style Datasets, a tiny model,
and checkpoints written in a model's official key layout (like ``odc.geo.testutils``).

Nothing here touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import xarray as xr
from affine import Affine

from .geo import pixel_centres
from .models.base import Variant
from .models.dofa import DEFAULT_BANDS, DOFA
from .models.registry import get_adapter, register_model

__all__ = [
    "TinyDOFA",
    "synthetic_raster",
    "to_xee_dataset",
    "write_official_checkpoint",
]


def synthetic_raster(
    shape: tuple[int, int] = (64, 80),
    *,
    bands: Sequence[str] = DEFAULT_BANDS,
    resolution: float = 10.0,
    origin: tuple[float, float] = (500000.0, 4200000.0),
    crs: str | None = "EPSG:32629",
    times: int | None = None,
    chunks: dict | None = None,
    seed: int = 0,
) -> xr.DataArray:
    """A smooth random raster of raw reflectance (0..10000) with a rioxarray CRS: ``([time,] band, y, x)``.

    ``origin`` is the top-left corner; pixel-centre coordinates follow rioxarray's convention.

    Examples
    --------
    >>> from xrembed.testing import synthetic_raster
    >>> synthetic_raster((32, 48)).rio.transform()
    Affine(10.0, 0.0, 500000.0,
           0.0, -10.0, 4200000.0)
    """
    rng = np.random.default_rng(seed)
    height, width = shape
    steps = 1 if times is None else times
    # Low-frequency structure plus noise, so neighbouring tiles differ and edge effects show.
    yy, xx = np.meshgrid(np.linspace(0, 3, height), np.linspace(0, 3, width), indexing="ij")
    base = np.stack([np.sin(yy * (i + 1)) + np.cos(xx * (i + 2)) for i in range(len(bands))])
    values = 3000 + 1500 * base[None] + rng.normal(0, 400, size=(steps, len(bands), height, width))
    values = np.clip(values, 1, 10000).astype(np.float32)
    transform = Affine(resolution, 0, origin[0], 0, -resolution, origin[1])
    y, x = pixel_centres(transform, (height, width))
    dims = ("time", "band", "y", "x")
    coords = {"band": list(bands), "y": y, "x": x}
    if times is None:
        values, dims = values[0], dims[1:]
    else:
        coords["time"] = np.array([f"2020-0{1 + i % 9}-15" for i in range(times)], dtype="datetime64[ns]")
    da = xr.DataArray(values, dims=dims, coords=coords, name="reflectance")
    if crs is not None:
        da = da.rio.write_crs(crs).rio.write_transform(transform)
    if chunks is not None:
        da = da.chunk(chunks)
    return da


def to_xee_dataset(da: xr.DataArray, crs: str = "EPSG:32629") -> xr.Dataset:
    """Re-shape a ``([time,] band, y, x)`` raster the way xee returns it: one variable per band, dims
    ``(time, y, x)``, the CRS only in each variable's ``attrs["crs"]`` and no ``spatial_ref``."""
    if "time" not in da.dims:
        da = da.expand_dims(time=np.array(["2020-06-01"], dtype="datetime64[ns]"))
    da = da.drop_vars("spatial_ref", errors="ignore")
    variables = {}
    for band in da["band"].values:
        var = da.sel(band=band).drop_vars("band")
        var.attrs = {"crs": crs}
        var.encoding = {}
        variables[str(band)] = var.transpose("time", "y", "x")
    return xr.Dataset(variables)


@register_model
class TinyDOFA(DOFA):
    """A small DOFA (dim 32, 2 blocks, patch 8, 32 px tiles) so engine tests run many tiles quickly."""

    model_id = "dofa-tiny"
    title = "DOFA, tiny test configuration (random weights only)"
    variants = {"tiny": Variant(name="tiny", embed_dim=32, depth=2, num_heads=2, patch_size=8, image_size=32)}
    default_variant = "tiny"


def write_official_checkpoint(path: str | os.PathLike, model: str = "dofa", variant: str | None = None, *, seed: int = 0):
    """Write random weights for ``model``/``variant`` in the official checkpoint's key layout.

    For DOFA that is the layout of ``earthflow/DOFA``: no ``fc_norm``, plus the pre-training leftovers
    ``mask_token``, ``norm.*`` and ``projector.*``. Returns the module whose weights were written, so a
    test can compare against it.
    """
    import torch

    adapter = get_adapter(model, variant)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = adapter.build_module().eval()
        for param in module.parameters():  # non-trivial values everywhere, fc_norm included
            param.data.add_(torch.randn_like(param) * 0.02)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    if isinstance(adapter, DOFA):
        dim = adapter.variant.embed_dim
        state.pop("fc_norm.weight")
        state.pop("fc_norm.bias")
        state["mask_token"] = torch.zeros(1, 1, dim)
        state["norm.weight"] = torch.ones(dim)
        state["norm.bias"] = torch.zeros(dim)
        state["projector.weight"] = torch.randn(dim, dim) * 0.02
        state["projector.bias"] = torch.zeros(dim)
        with torch.no_grad():  # what the official loader leaves in fc_norm: its default initialisation
            module.fc_norm.weight.fill_(1.0)
            module.fc_norm.bias.fill_(0.0)
    torch.save(state, path)
    return module
