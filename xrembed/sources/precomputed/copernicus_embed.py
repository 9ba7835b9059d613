"""Copernicus-Embed: one 768-d Copernicus-FM embedding per 0.25 degree ERA5 grid cell (2021, static).

The product is a single global map, 721 rows x 1440 columns x 768 values, in EPSG:4326 (Wang et al. 2025,
arXiv:2503.11849). Each vector is the average Copernicus-FM embedding over all modalities of a
Copernicus-Pretrain grid cell (Sentinel-1/2/3/5P and a DEM, collected over 2021). Cells without data (ocean,
empty) hold all-zero vectors; they become NaN here. Two distributions are read:

* the GeoTIFF ``embed_map_310k.tif`` (torchgeo's format: float32, 768 bands, tiled 256, deflate, pixel
  interleave, ``Affine(0.25, 0, -180.125, 0, -0.25, 90.125)``, no nodata), opened lazily with rioxarray, over
  HTTP range reads (GDAL ``/vsicurl/``) for a URL. This is the default, from Hugging Face.
  Any window of that global lattice (a file cut from it) is accepted too.
* the original ``embed_map_310k.npz`` (member ``arr_0``: C-order ``(721, 1440, 768)``). The member is
  deflate-compressed, so it cannot be memory-mapped; each dask task streams the member and reads only the
  rows it needs (decompressing everything before them), so nothing is read at open and a crop never holds
  more than its own rows in memory.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import rasterio
import rasterio.errors
import rioxarray
import xarray as xr
from affine import Affine

from ...errors import NoDataInBoundsError, OptionError, SourceError
from ...geo import PixelWindow, is_on_lattice, pixel_centres, pixel_window, window_transform
from ...specs import BBox, PointBuffer, TemporalSpec

__all__ = ["DEFAULT_SOURCE", "PRODUCT_INFO", "open_copernicus_embed"]

#: The GeoTIFF on the Hugging Face Hub, pinned to a revision (sha256 38f6fd15...a59ad, as torchgeo checks).
DEFAULT_SOURCE = (
    "https://huggingface.co/datasets/torchgeo/copernicus_embed/resolve/"
    "435b4a7bdce6f6fdbf4272f9d6e54f2604f35fdb/embed_map_310k.tif"
)
EMBED_DIM = 768
RESOLUTION = 0.25
#: Outer corner of the global grid: pixel centres run lon -180 ... 179.75, lat 90 ... -90 (ERA5).
GLOBAL_LEFT, GLOBAL_TOP = -180.125, 90.125
GLOBAL_SHAPE = (721, 1440)
GLOBAL_TRANSFORM = Affine(RESOLUTION, 0.0, GLOBAL_LEFT, 0.0, -RESOLUTION, GLOBAL_TOP)
YEAR = 2021
NPZ_MEMBER = "arr_0.npy"
#: Dask chunk side for the GeoTIFF: its 256 x 256 blocks (pixel-interleaved, so all 768 values per chunk).
DEFAULT_CHUNK = 256

PRODUCT_INFO: dict = {
    "product": "copernicus_embed",
    "title": "Copernicus-Embed (Copernicus-FM embeddings on the 0.25 degree ERA5 grid)",
    "embed_dim": EMBED_DIM,
    "resolution": RESOLUTION,
    "crs": "EPSG:4326",
    "years": (YEAR,),
    "dequantisation": "none: the float32 values are the embeddings; all-zero vectors (no data) become NaN",
    "nodata": "all-zero 768-d vector (ocean or no Copernicus-Pretrain data) -> NaN",
    "default_source": DEFAULT_SOURCE,
    "licence": "CC-BY-4.0",
    "attribution": (
        "Copernicus-Embed, Wang et al. (2025), Towards a Unified Copernicus Foundation Model for Earth "
        "Vision, arXiv:2503.11849, CC-BY-4.0; contains modified Copernicus Sentinel data 2021."
    ),
    "reference": "https://github.com/zhu-xlab/Copernicus-FM/tree/main/Copernicus-Embed-025deg",
}


def open_copernicus_embed(
    *,
    spatial: BBox | PointBuffer | None = None,
    temporal: TemporalSpec | int | None = None,
    source: str | os.PathLike | None = None,
    chunks: int | dict | None = None,
) -> xr.DataArray:
    """Open Copernicus-Embed as a lazy ``(embedding, y, x)`` float32 DataArray in EPSG:4326.

    Parameters
    ----------
    spatial
        ``BBox`` or ``PointBuffer`` to crop to; the crop snaps outwards to whole 0.25 degree cells and is
        clipped to the source's extent. ``None``: the whole source.
    temporal
        The product is a static 2021 map: ``None``, ``2021``, ``TemporalSpec.year(2021)`` or a range that
        overlaps 2021. Anything else raises :class:`~xrembed.errors.NoDataInBoundsError`.
    source
        Path or URL of ``embed_map_310k.tif`` (or a window of its grid), or path of the original
        ``embed_map_310k.npz``. ``None``: the GeoTIFF on Hugging Face, read by HTTP range requests.
    chunks
        Dask chunk side in cells, or a dict with ``y``/``x`` (``embedding`` is always one chunk).
        Default: 256 (the GeoTIFF's blocks); for an ``.npz``, the whole crop as one chunk, since every
        row chunk decompresses the member from its start.

    Returns
    -------
    xarray.DataArray
        ``embeddings``, dims ``(embedding, y, x)``, float32, NaN where the product has no data, with a
        ``spatial_ref`` (CRS and transform), pixel-centre ``x``/``y`` and attrs ``product``, ``licence``,
        ``attribution``, ``dequantisation``, ``year`` and ``source``. There is no ``time`` dimension.

    Examples
    --------
    >>> import xrembed
    >>> da = open_copernicus_embed(spatial=xrembed.BBox(5.0, 45.0, 10.0, 48.0))  # doctest: +SKIP
    >>> da.sizes, da.rio.crs.to_epsg()  # doctest: +SKIP
    (Frozen({'embedding': 768, 'y': 13, 'x': 21}), 4326)
    """
    _check_temporal(temporal)
    if spatial is not None and not isinstance(spatial, (BBox, PointBuffer)):
        raise OptionError(f"spatial must be a BBox, a PointBuffer or None, got {type(spatial).__name__}.")
    source = DEFAULT_SOURCE if source is None else source
    text = os.fspath(source)
    remote = "://" in text
    if not remote and not Path(text).is_file():
        raise SourceError(
            f"Copernicus-Embed source {text!r} does not exist; pass the path of embed_map_310k.tif or "
            "embed_map_310k.npz, a URL, or source=None for the copy on Hugging Face."
        )
    if text.lower().endswith(".npz"):
        if remote:
            raise OptionError(
                "the .npz release is one compressed member and cannot be read by HTTP range requests; "
                "download it first, or use the GeoTIFF URL (source=None)."
            )
        data = _open_npz(Path(text), spatial, chunks)
    else:
        data = _open_geotiff(text, spatial, chunks)
    data = data.where((data != 0).any("embedding"))  # all-zero vectors are "no data" (float32 is kept)
    data.name = "embeddings"
    data = data.rio.write_nodata(np.nan, encoded=False)
    data.attrs.update(
        product=PRODUCT_INFO["product"],
        licence=PRODUCT_INFO["licence"],
        attribution=PRODUCT_INFO["attribution"],
        dequantisation=PRODUCT_INFO["dequantisation"],
        year=YEAR,
        source=text,
    )
    return data


def _check_temporal(temporal) -> None:
    if temporal is None:
        return
    if isinstance(temporal, int) and not isinstance(temporal, bool):
        temporal = TemporalSpec.year(temporal)
    if not isinstance(temporal, TemporalSpec):
        raise OptionError(f"temporal must be a TemporalSpec, a year or None, got {type(temporal).__name__}.")
    start, end = temporal.interval
    if not (start < f"{YEAR + 1}-01-01" and end > f"{YEAR}-01-01"):
        raise NoDataInBoundsError(
            f"Copernicus-Embed is a static map of {YEAR} (inputs collected {YEAR}-01-01 to {YEAR}-12-31); "
            f"the window [{start}, {end}) misses it. Pass temporal=TemporalSpec.year({YEAR}) or None."
        )


def _window(spatial, transform: Affine, height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the source covering ``spatial``, snapped outwards to whole cells."""
    if spatial is None:
        return slice(0, height), slice(0, width)
    left, bottom, right, top = spatial.bounds_in("EPSG:4326")
    if left > right:
        raise OptionError(
            f"the region crosses the antimeridian (lon {left} to {right}); request each side as its own BBox."
        )
    window = pixel_window((left, bottom, right, top), _lattice(transform)).clipped((height, width))
    if window.is_empty:
        l, t = transform.c, transform.f
        r, b = l + width * RESOLUTION, t - height * RESOLUTION
        raise NoDataInBoundsError(
            f"the region (lon {left:.4f} to {right:.4f}, lat {bottom:.4f} to {top:.4f}) lies outside this "
            f"Copernicus-Embed source (lon {l} to {r}, lat {b} to {t}); pass a region inside it, or the global "
            "map (source=None)."
        )
    return window.slices


def _lattice(transform: Affine) -> Affine:
    """The file's 0.25-degree lattice at its exact nominal pixel size (headers may round it)."""
    return Affine(RESOLUTION, 0.0, transform.c, 0.0, -RESOLUTION, transform.f)


def _georeference(data: xr.DataArray, transform: Affine, rows: slice, cols: slice) -> xr.DataArray:
    """Pixel-centre coordinates, CRS and the transform of the window ``rows`` x ``cols``."""
    window = PixelWindow(rows.start, rows.stop, cols.start, cols.stop)
    corner = window_transform(_lattice(transform), window)
    y, x = pixel_centres(corner, window.shape)
    data = data.assign_coords(embedding=np.arange(EMBED_DIM), y=y, x=x)
    data = data.rio.write_crs("EPSG:4326")
    return data.rio.write_transform(corner)


def _chunk_sides(chunks, default) -> tuple:
    if chunks is None:
        return default, default
    if isinstance(chunks, int) and not isinstance(chunks, bool) and chunks > 0:
        return chunks, chunks
    if isinstance(chunks, dict) and set(chunks) <= {"embedding", "band", "y", "x"}:
        if chunks.get("embedding", -1) not in (-1, EMBED_DIM) or chunks.get("band", -1) not in (-1, EMBED_DIM):
            raise OptionError(
                "Copernicus-Embed keeps all 768 values of a cell in one chunk (the data are pixel-interleaved); "
                "leave 'embedding' out of chunks."
            )
        return chunks.get("y", default), chunks.get("x", default)
    raise OptionError(f"chunks must be a positive int or a dict with 'y'/'x', got {chunks!r}.")


def _not_the_product(text: str, why: str) -> SourceError:
    return SourceError(
        f"{text!r} is not Copernicus-Embed ({why}); pass embed_map_310k.tif (768 bands, EPSG:4326, on the "
        "0.25 degree grid with corner (-180.125, 90.125)) or embed_map_310k.npz, or source=None."
    )


def _open_geotiff(text: str, spatial, chunks) -> xr.DataArray:
    try:
        with rasterio.open(text) as src:  # the header only (one range request for a URL)
            count, crs, transform = src.count, src.crs, src.transform
            height, width, dtypes = src.height, src.width, set(src.dtypes)
    except rasterio.errors.RasterioIOError as err:
        raise SourceError(f"cannot open Copernicus-Embed GeoTIFF {text!r}: {err}. Check the path or URL.") from err
    if count != EMBED_DIM:
        raise _not_the_product(text, f"{count} bands, not {EMBED_DIM}")
    if crs is None or crs.to_epsg() != 4326:
        raise _not_the_product(text, f"CRS {crs}, not EPSG:4326")
    if not (
        math.isclose(transform.a, RESOLUTION) and math.isclose(transform.e, -RESOLUTION)
        and transform.b == 0 and transform.d == 0
    ):
        raise _not_the_product(text, f"pixel size ({transform.a}, {transform.e}), not (0.25, -0.25) north-up")
    col_offset = (transform.c - GLOBAL_LEFT) / RESOLUTION
    row_offset = (GLOBAL_TOP - transform.f) / RESOLUTION
    if not (is_on_lattice(col_offset) and is_on_lattice(row_offset)):
        raise _not_the_product(text, f"origin ({transform.c}, {transform.f}) is off the ERA5 0.25 degree lattice")
    rows, cols = _window(spatial, transform, height, width)
    side_y, side_x = _chunk_sides(chunks, DEFAULT_CHUNK)
    data = rioxarray.open_rasterio(text, chunks={"band": -1, "y": side_y, "x": side_x}, masked=False)
    data = data.isel(y=rows, x=cols).rename(band="embedding")
    if dtypes != {"float32"}:
        data = data.astype("float32")
    data.attrs = {}
    return _georeference(data, transform, rows, cols)


def _npz_header(path: Path) -> tuple[tuple, np.dtype, int]:
    """``(shape, dtype, offset)`` of the ``arr_0`` member; reads its header only."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise _not_the_product(str(path), "not a zip/.npz archive") from err
    with archive:
        if NPZ_MEMBER not in archive.namelist():
            raise _not_the_product(str(path), f"no member 'arr_0' (it has {archive.namelist()})")
        with archive.open(NPZ_MEMBER) as member:
            version = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(member)
            offset = member.tell()
    if fortran_order:
        raise _not_the_product(str(path), "arr_0 is Fortran-ordered; the release is C-ordered (721, 1440, 768)")
    if tuple(shape) != (*GLOBAL_SHAPE, EMBED_DIM):
        raise _not_the_product(str(path), f"arr_0 has shape {tuple(shape)}, not (721, 1440, 768)")
    if dtype.kind not in "fiu":
        raise _not_the_product(str(path), f"arr_0 has dtype {dtype}")
    return tuple(shape), dtype, offset


def _read_npz_rows(path: Path, dtype: np.dtype, offset: int, rows: slice, cols: slice) -> np.ndarray:
    """``(embedding, row, col)`` float32 block; streams (decompresses) the member up to ``rows.stop``."""
    row_bytes = GLOBAL_SHAPE[1] * EMBED_DIM * dtype.itemsize
    with zipfile.ZipFile(path) as archive, archive.open(NPZ_MEMBER) as member:
        member.seek(offset + rows.start * row_bytes)  # forward seek in a deflate stream: read and discard
        buffer = member.read((rows.stop - rows.start) * row_bytes)
    block = np.frombuffer(buffer, dtype=dtype).reshape(rows.stop - rows.start, GLOBAL_SHAPE[1], EMBED_DIM)
    return np.ascontiguousarray(block[:, cols, :].transpose(2, 0, 1), dtype=np.float32)


def _npz_task(path, dtype, offset, rows, cols):
    # Looks the reader up at run time, so a test can count reads.
    return _read_npz_rows(path, dtype, offset, rows, cols)


def _open_npz(path: Path, spatial, chunks) -> xr.DataArray:
    _, dtype, offset = _npz_header(path)
    rows, cols = _window(spatial, GLOBAL_TRANSFORM, *GLOBAL_SHAPE)
    n_rows, n_cols = rows.stop - rows.start, cols.stop - cols.start
    side_y, side_x = _chunk_sides(chunks, None)
    side_y = n_rows if side_y in (None, -1) else side_y
    side_x = n_cols if side_x in (None, -1) else side_x
    blocks = []
    for start in range(rows.start, rows.stop, side_y):
        block_rows = slice(start, min(start + side_y, rows.stop))
        task = dask.delayed(_npz_task, pure=True)(path, dtype, offset, block_rows, cols)
        shape = (EMBED_DIM, block_rows.stop - block_rows.start, n_cols)
        blocks.append(dsa.from_delayed(task, shape=shape, dtype=np.float32))
    array = dsa.concatenate(blocks, axis=1).rechunk({0: -1, 2: side_x})
    data = xr.DataArray(array, dims=("embedding", "y", "x"))
    return _georeference(data, GLOBAL_TRANSFORM, rows, cols)
