"""The ``.rsembed`` accessors on ``xr.DataArray`` and ``xr.Dataset``: thin fronts over :func:`embed`.

Nothing is validated in ``__init__`` (xarray would turn an error there into an opaque ``RuntimeError``);
every check happens in the method call.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
        tile_size
            Tile side in pixels (``None``, default: the model's pretraining size, ``describe_model(m)["image_size"]``).
            Another multiple of the patch size runs the model at that size with its position embedding
            resampled (bicubic, as timm), for the families whose ``describe_model(m)["tile_sizes"]`` says so
            (others refuse, naming why); a departure from the pretraining resolution. Implies tiles: not with
            ``input_prep="resize"``. Same as ``input_prep=InputPrepSpec.tile(tile_size=...)``.
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
        space
            ``"tokens"`` (default): the model's grid tokens. ``"joint"`` (vision-language models: dofa_clip,
            remoteclip): each cell's token mapped through the image head into the image-text space, so that
            text queries and labels can be scored per cell (``attrs["space"] = "joint"``); an approximation of
            the whole-image embedding, see ``docs/zero-shot.md``.
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

    def pca(self, n_components: int = 3, *, sample_size: int = 10_000, seed: int = 0) -> xr.DataArray:
        """Lazy principal components ``(component, y, x)``, fitted on a seeded sample of valid cells;
        see :func:`xrembed.analysis.pca`.

        Examples
        --------
        >>> emb.rsembed.pca(n_components=3)                                  # doctest: +SKIP
        """
        from .analysis.pca import pca

        return pca(self._obj, n_components, sample_size=sample_size, seed=seed)

    def to_rgb(
        self,
        *,
        bands: Sequence[int] | None = None,
        percentiles: tuple[float, float] = (2, 98),
        value_range: tuple[float, float] | None = None,
        sample_size: int = 10_000,
        seed: int = 0,
    ) -> xr.DataArray:
        """RGB quicklook ``(band=[r, g, b], y, x)`` uint8, robust stretch, nodata 0 (``rio.to_raster`` ready);
        see :func:`xrembed.analysis.to_rgb`.

        Examples
        --------
        >>> emb.rsembed.to_rgb().rio.to_raster("pca.tif")                    # doctest: +SKIP
        """
        from .analysis.rgb import to_rgb

        return to_rgb(
            self._obj, bands=bands, percentiles=percentiles, value_range=value_range, sample_size=sample_size, seed=seed
        )

    def similarity(self, query, *, negatives=None, crs=None) -> xr.DataArray:
        """Lazy cosine similarity ``(y, x)`` to a vector, point(s), polygons or text (``2 * mean(pos) -
        mean(neg)`` with ``negatives``); see :func:`xrembed.analysis.similarity`.

        Examples
        --------
        >>> emb.rsembed.similarity((-13.1, 25.0))                            # doctest: +SKIP
        """
        from .analysis.similarity import similarity

        return similarity(self._obj, query, negatives=negatives, crs=crs)

    def kmeans(
        self, k: int, *, normalise: bool = True, sample_size: int = 10_000, seed: int = 0, n_init: int = 4
    ) -> xr.DataArray:
        """Lazy k-means label map ``(y, x)`` (fit on a seeded sample, predicted per chunk; NaN kept);
        see :func:`xrembed.analysis.kmeans`.

        Examples
        --------
        >>> emb.rsembed.kmeans(5)                                            # doctest: +SKIP
        """
        from .analysis.kmeans import kmeans

        return kmeans(self._obj, k, normalise=normalise, sample_size=sample_size, seed=seed, n_init=n_init)

    def sample(self, points, *, crs=None, outside: str = "raise", prefix: str = "e"):
        """One row per point: the vector of the cell under it; see :func:`xrembed.analysis.sample`.

        Examples
        --------
        >>> emb.rsembed.sample(gdf_points)                                   # doctest: +SKIP
        """
        from .analysis.sample import sample

        return sample(self._obj, points, crs=crs, outside=outside, prefix=prefix)

    def zonal(self, polygons, *, stats: Sequence[str] = ("mean",), crs=None, by=None):
        """One row per polygon: valid-area-weighted mean vector, direction, area, cells, mean resultant
        length; streamed over chunks. See :func:`xrembed.analysis.zonal`.

        Examples
        --------
        >>> emb.rsembed.zonal(gdf_fields)                                    # doctest: +SKIP
        """
        from .analysis.zonal import zonal

        return zonal(self._obj, polygons, stats=stats, crs=crs, by=by)


    def classify(
        self,
        labels: Sequence[str],
        *,
        model: str,
        template: str | Sequence[str] | None = None,
        output: str = "grid",
        tokenizer: str | os.PathLike | None = None,
        **options,
    ) -> xr.DataArray:
        """Zero-shot probabilities of text ``labels`` with a vision-language model; lazy like :meth:`embed`.

        Parameters
        ----------
        labels
            Class names (distinct strings); they become the ``label`` coordinate.
        model
            A model with a text tower: ``"dofa_clip"`` or ``"remoteclip"``.
        template
            A prompt template with ``{}`` for the label (``"a satellite image of {}."``), or several,
            averaged as CLIP does; default: the label alone.
        output
            ``"grid"``: ``(label, y, x)`` per cell of ``embed(model, space="joint")`` (tile mode), on the
            model's output grid with the input's CRS. ``"pooled"``: ``(label,)`` per image, from the
            whole-image embedding (``input_prep="resize"`` by default: the model's own recipe).
        tokenizer
            The tokenizer file (see :func:`xrembed.encode_text`).
        **options
            Other :meth:`embed` keywords (``bands=``, ``weights=``, ``variant=``, ``input_prep=``, ...).

        Returns
        -------
        xarray.DataArray
            Named ``probability``: DOFA-CLIP gives an independent sigmoid probability per label
            (``sigmoid(cos * exp(logit_scale) + logit_bias)``), RemoteCLIP a softmax over the labels
            (``exp(logit_scale) * cos``), with the scalars read from the checkpoint. NaN where the input
            has no valid pixel. ``p.argmax("label")`` is the class map.

        Examples
        --------
        >>> p = da.rsembed.classify(["water", "sand dunes", "a town"], model="dofa_clip",
        ...                         template="a satellite image of {}.")          # doctest: +SKIP
        >>> classes = p.argmax("label")                                          # doctest: +SKIP
        """
        from .text.classify import classify

        return classify(self._obj, labels, model=model, template=template, output=output, tokenizer=tokenizer, **options)

    def to_zarr(self, store, *, resume: bool = True, overwrite: bool = False, show_progress: bool = True,
                batch_regions: int | None = None):
        """Stream this embedding grid to the Zarr store ``store`` region by region, kill-safe and resumable.

        The same as ``xrembed.to_zarr(emb, store, ...)``; see :func:`xrembed.stream.to_zarr`.

        Examples
        --------
        >>> emb = xrembed.open_raster("sample").rsembed.embed("dofa", weights="random")  # doctest: +SKIP
        >>> emb.rsembed.to_zarr("emb.zarr")                                              # doctest: +SKIP
        """
        from .stream import to_zarr

        return to_zarr(self._obj, store, resume=resume, overwrite=overwrite, show_progress=show_progress,
                       batch_regions=batch_regions)


@xr.register_dataarray_accessor("rsembed")
class RSEmbedDataArrayAccessor(RSEmbedAccessor):
    """``DataArray.rsembed``: bands on a ``band`` dimension whose coordinate holds their names."""


@xr.register_dataset_accessor("rsembed")
class RSEmbedDatasetAccessor(RSEmbedAccessor):
    """``Dataset.rsembed``: one variable per band (as xee and ``open_dataset(engine="rasterio")`` give)."""
