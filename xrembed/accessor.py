"""The ``.rsembed`` accessors on ``xr.DataArray`` and ``xr.Dataset``: thin fronts over :func:`embed`.

Nothing is validated in ``__init__`` (xarray would turn an error there into an opaque ``RuntimeError``);
every check happens in the method call.
"""

from __future__ import annotations

from typing import Unpack

import xarray as xr

from .embedding import embed as _embed
from .options import EmbedKwargs


class RSEmbedAccessor:
    """Embed georeferenced rasters with remote-sensing foundation models (``obj.rsembed``)."""

    def __init__(self, xarray_obj: xr.DataArray | xr.Dataset) -> None:
        self._obj = xarray_obj

    def embed(self, model: str, **options: Unpack[EmbedKwargs]) -> xr.DataArray:
        """Embed this raster with ``model``; lazy for dask-backed input, reads no pixels.

        Parameters
        ----------
        model
            A model id from :func:`xrembed.list_models` (e.g. ``"dofa"``).
        output
            ``"grid"``: a DataArray ``(..., embedding, y, x)`` on the input grid zoomed out by the patch
            size, with the input's CRS. ``"pooled"``: one vector ``(..., embedding)`` per extra-dim step.
        input_prep
            ``"tile"``: model-size tiles on the global patch lattice at native resolution.
            ``"resize"``: the whole extent resized to the model size (one token grid spread over it).
            ``"auto"`` (default): tile for grids; resize for pooled output when the raster spans at most
            4 tiles per side, else tile.
        bands
            With named input bands, which of them to use and in what order; with unnamed bands, their
            names (one per band). By default the model's bands are picked by name, in the model's order.
        wavelengths
            Centre wavelengths in micrometres, one per band used (wavelength-conditioned models).
        modality
            Sensor modality for models that accept several (e.g. ``"s2"``, ``"s1"``).
        variant
            Model variant (e.g. ``"base"``, ``"large"``); see :func:`xrembed.describe_model`.
        weights
            ``None``: the official checkpoint (downloaded once through ``huggingface_hub``); a path: that
            local file; ``"random"``: a seeded random initialisation (tests and benchmarks; warned).
        device
            ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        batch_size
            Tiles per forward pass (default 8 on CPU, 32 on CUDA).
        precision
            ``"fp32"`` (default), ``"bf16"`` (autocast, CPU or GPU) or ``"fp16"`` (CUDA only).
        nodata
            Input value meaning "no data" (default: the input's ``_FillValue``/``rio.nodata``; NaN is
            always no data). Output cells with no valid pixel are NaN.
        tiles_per_chunk
            Tiles per dask chunk along each axis (memory per task grows with its square).
        temporal, source, patch_size
            Precomputed products only (``"tessera"``, ``"gse"``, ``"copernicus_embed"``): the product's
            year(s) (a ``TemporalSpec``), where to read it (path or URL; default: its public location), and
            the zoom-out of this raster's grid the product is resampled onto (nearest neighbour; default 1,
            this raster's own grid; 16 lines it up cell for cell with a patch-16 model's grid).
        like
            Precomputed products only: a DataArray or Dataset with a grid (e.g. a model's output ``emb``); the
            product lands on exactly that grid (CRS, transform, shape, ``x``/``y`` coordinates), nearest
            neighbour, so ``da.rsembed.embed("gse", temporal=..., like=emb)`` lines up with ``emb`` cell for
            cell. Its CRS may differ from the product's (each cell takes the vector under its centre). Not with
            ``patch_size=``.

        Returns
        -------
        xarray.DataArray
            Named ``embeddings``; ``embedding`` is ``0..D-1`` (integers) for every model and product; ``attrs``
            are plain JSON values recording the model (or product id), variant, weights, patch size,
            input_prep and precision; a grid also carries ``gsd`` (metres), as the exported ``geoemb:``
            metadata does, and NaN as its nodata (``rio.nodata``, from ``encoding["_FillValue"]``).

        Examples
        --------
        >>> import xrembed
        >>> da = xrembed.open_raster("sample")                                # doctest: +SKIP
        >>> emb = da.rsembed.embed("dofa", weights="/path/DOFA_ViT_base_e100.pth")  # doctest: +SKIP
        >>> emb.rio.crs, emb.sizes                                            # doctest: +SKIP
        (CRS.from_epsg(32629), Frozen({'embedding': 768, 'y': 35, 'x': 35}))
        """
        return _embed(self._obj, model, **options)


@xr.register_dataarray_accessor("rsembed")
class RSEmbedDataArrayAccessor(RSEmbedAccessor):
    """``DataArray.rsembed``: bands on a ``band`` dimension whose coordinate holds their names."""


@xr.register_dataset_accessor("rsembed")
class RSEmbedDatasetAccessor(RSEmbedAccessor):
    """``Dataset.rsembed``: one variable per band (as xee and ``open_dataset(engine="rasterio")`` give)."""
