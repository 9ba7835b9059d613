"""Tile layout on the global patch lattice, in index space.

All positions here are counted in *tokens* (patches of ``patch_size`` pixels) along one axis, so they
are exact integers. A raster of ``n`` pixels has ``ceil(n / patch_size)`` tokens. Tiles hold
``tile_tokens`` tokens and start at multiples of ``tile_tokens``; when the raster does not end on a
tile boundary, the last tile is shifted back by whole patches so that it covers real pixels and owns
only the tokens no earlier tile produced. Only what lies beyond the raster (less than one patch, or the
rest of a tile when the raster is smaller than one tile) is filled.

Because the layout depends only on the raster size, and dask chunks are cut on tile boundaries
(:func:`chunk_tokens`), a block can apply :func:`tile_layout` to itself and get exactly the tiles the
whole raster would have: the result does not depend on the chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class AxisTile:
    """One tile along one axis: it reads tokens ``[start, start + tile_tokens)`` and keeps ``[own_start, own_stop)``."""

    start: int
    own_start: int
    own_stop: int


def token_count(pixels: int, patch_size: int) -> int:
    """Number of output cells along an axis of ``pixels`` pixels."""
    return math.ceil(pixels / patch_size)


def tile_layout(tokens: int, tile_tokens: int) -> list[AxisTile]:
    """Tiles covering ``tokens`` tokens, on the lattice of multiples of ``tile_tokens``.

    Examples
    --------
    >>> [(t.start, t.own_start, t.own_stop) for t in tile_layout(32, 14)]
    [(0, 0, 14), (14, 14, 28), (18, 28, 32)]
    >>> [(t.start, t.own_start, t.own_stop) for t in tile_layout(5, 14)]
    [(0, 0, 5)]
    """
    if tokens <= 0:
        return []
    if tokens <= tile_tokens:
        return [AxisTile(0, 0, tokens)]
    tiles = [AxisTile(s, s, s + tile_tokens) for s in range(0, tokens - tile_tokens + 1, tile_tokens)]
    covered = tiles[-1].own_stop
    if covered < tokens:
        tiles.append(AxisTile(tokens - tile_tokens, covered, tokens))
    return tiles


def chunk_tokens(tokens: int, tile_tokens: int, tiles_per_chunk: int) -> tuple[int, ...]:
    """Output chunk sizes (in tokens) along an axis: ``tiles_per_chunk`` tiles each.

    A trailing chunk shorter than one tile is merged into its neighbour, so the shifted edge tile
    always finds its real pixels inside its own chunk.

    Examples
    --------
    >>> chunk_tokens(32, 14, 1)
    (14, 18)
    >>> chunk_tokens(60, 14, 2)
    (28, 32)
    """
    step = tile_tokens * tiles_per_chunk
    sizes = [step] * (tokens // step)
    remainder = tokens - step * len(sizes)
    if remainder:
        if remainder < tile_tokens and sizes:
            sizes[-1] += remainder
        else:
            sizes.append(remainder)
    return tuple(sizes) if sizes else (tokens,)


def pixel_chunks(token_chunks: tuple[int, ...], pixels: int, patch_size: int) -> tuple[int, ...]:
    """Input chunk sizes (in pixels) that line up with ``token_chunks``; the last one ends at ``pixels``."""
    sizes = [t * patch_size for t in token_chunks]
    sizes[-1] = pixels - sum(sizes[:-1])
    return tuple(sizes)


def check_input_prep(model: str, input_prep, variant: str | None = None) -> None:
    """Refuse, before any pixel is read, an ``InputPrepSpec`` whose tile size or stride ``model`` cannot run.

    Strings (``"tile"``, ``"resize"``, ``"auto"``) and ``None`` always pass; products have no tiles.

    Examples
    --------
    >>> from xrembed.specs import InputPrepSpec
    >>> check_input_prep("dofa", InputPrepSpec.tile(tile_size=224))
    >>> check_input_prep("dofa", InputPrepSpec.tile(tile_size=448))   # resampled position embedding
    >>> check_input_prep("dofa", InputPrepSpec.tile(tile_size=100))
    Traceback (most recent call last):
    ...
    xrembed.errors.OptionError: InputPrepSpec.tile(tile_size=100): tiles of 'dofa' must be a whole number of its 16 px patches; pass tile_size=None (its own 224 px) or a multiple of 16.
    """
    check = getattr(input_prep, "check_model", None)
    if check is None or (input_prep.tile_size is None and input_prep.tile_stride is None):
        return
    from .models.registry import get_adapter
    from .sources.precomputed import is_product

    if is_product(model):
        return
    adapter = get_adapter(model, variant)
    v = adapter.variant
    check(model, patch_size=v.patch_size, image_size=v.image_size, tile_size_check=adapter.check_tile_size)


def requested_tile_size(input_prep, tile_size: int | None) -> int | None:
    """The tile size asked for, by ``embed(tile_size=...)`` or an ``InputPrepSpec``'s ``tile_size`` (``None``:
    the model's own); asking for two different sizes is an ``OptionError``.

    Examples
    --------
    >>> from xrembed.specs import InputPrepSpec
    >>> requested_tile_size(InputPrepSpec.tile(tile_size=448), None), requested_tile_size("tile", 64)
    (448, 64)
    """
    from .errors import OptionError

    spec_size = getattr(input_prep, "tile_size", None)
    if spec_size is not None and tile_size is not None and int(spec_size) != int(tile_size):
        raise OptionError(
            f"tile_size={tile_size} and InputPrepSpec.tile(tile_size={spec_size}) ask for two tile sizes; give one."
        )
    return spec_size if spec_size is not None else tile_size


def run_tile_size(adapter, input_prep, tile_size: int | None) -> int:
    """The size (pixels) of the tiles ``adapter`` runs on: the one asked for, checked by the family
    (:meth:`~xrembed.models.base.ModelAdapter.check_tile_size`), or its pretraining ``image_size``."""
    size = requested_tile_size(input_prep, tile_size)
    return adapter.variant.image_size if size is None else adapter.check_tile_size(size)


def overlap_owners(tokens: int, tile_tokens: int, stride_tokens: int) -> list[int]:
    """For overlapping tiles (stride below the tile size), the lattice offset whose tile owns each cell.

    Tiles start on the global lattice of multiples of ``stride_tokens``; they are grouped by their start
    modulo ``tile_tokens`` (the *offset*, ``0, stride, 2*stride, ...``), each group being the ordinary
    layout (:func:`tile_layout`) of the raster cut at that offset. A cell is owned by the tile whose centre
    is nearest to it, among the tiles holding it; a tie goes to the smaller offset. Depends on the raster
    size only, so the choice is the same whatever the chunking.

    Examples
    --------
    >>> overlap_owners(8, 4, 2)   # tiles [0,4) [4,8) (offset 0) and [2,6) (offset 2): cells 3, 4 are nearer 4
    [0, 0, 0, 2, 2, 0, 0, 0]
    """
    if stride_tokens < 1 or tile_tokens % stride_tokens:
        raise ValueError("stride_tokens must divide tile_tokens")
    offsets = list(range(0, tile_tokens, stride_tokens))
    owners = []
    for cell in range(tokens):
        best, best_distance = 0, math.inf
        for offset in offsets:
            if cell < offset:
                continue
            for tile in tile_layout(tokens - offset, tile_tokens):
                if tile.own_start <= cell - offset < tile.own_stop:
                    centre = offset + tile.start + tile_tokens / 2
                    distance = abs(cell + 0.5 - centre)
                    if distance < best_distance - 1e-9:
                        best, best_distance = offset, distance
                    break
        owners.append(best)
    return owners


def overlap_stride(model: str, input_prep, variant: str | None = None) -> int | None:
    """The stride in pixels when ``input_prep`` asks for overlapping tiles of ``model``, else ``None``.

    Examples
    --------
    >>> from xrembed.specs import InputPrepSpec
    >>> overlap_stride("dofa", InputPrepSpec.tile(tile_stride=112)), overlap_stride("dofa", "tile")
    (112, None)
    """
    stride = getattr(input_prep, "tile_stride", None)
    if stride is None or getattr(input_prep, "mode", "tile") == "resize":
        return None
    check_input_prep(model, input_prep, variant)
    from .models.registry import get_adapter

    size = getattr(input_prep, "tile_size", None) or get_adapter(model, variant).variant.image_size
    return stride if stride != size else None
