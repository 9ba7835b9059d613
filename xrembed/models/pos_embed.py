"""Absolute position embeddings at another grid size (tiles other than the pretraining size).

A ViT pretrained on ``n x n`` patches holds one position vector per patch (plus prefix tokens such as CLS).
Run on tiles of ``m x m`` patches (``InputPrepSpec.tile(tile_size=...)`` or ``embed(..., tile_size=...)``),
the table is resampled the way timm does it (``timm.layers.resample_abs_pos_embed``, which timm uses for
``dynamic_img_size`` and when loading a checkpoint at another ``img_size``): the prefix rows are kept as
they are, the ``n x n`` grid is resized to ``m x m`` by bicubic interpolation with antialiasing, in float32,
and cast back. timm cannot be a runtime dependency here (it imports torchvision), so this is the same
arithmetic written out; ``tests/models/test_pos_embed.py`` checks it against timm.

This is a departure from the pretraining resolution: the model never saw the interpolated positions, so
its tokens at another tile size are not those of the pretrained model at its own size (see the input
contract page, "Tile size").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F

__all__ = ["resample_abs_pos_embed", "pos_embed_for"]


def resample_abs_pos_embed(
    pos_embed: torch.Tensor,
    new_size: Sequence[int],
    old_size: Sequence[int] | None = None,
    num_prefix_tokens: int = 1,
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """``pos_embed`` ``(1, prefix + h * w, D)`` resampled to a ``new_size`` = ``(rows, cols)`` patch grid.

    The first ``num_prefix_tokens`` rows (CLS, registers) are kept unchanged; the others, a row-major grid
    of ``old_size`` (square when ``None``), are resized with ``F.interpolate(mode=interpolation,
    antialias=antialias)`` in float32. At the table's own size it is returned as it is (the same object),
    so a model at its pretraining size runs exactly as before. Same signature and result as timm's
    ``resample_abs_pos_embed``.

    Examples
    --------
    >>> table = torch.arange(1 + 4 * 4, dtype=torch.float32).reshape(1, 17, 1)
    >>> resample_abs_pos_embed(table, (8, 8)).shape
    torch.Size([1, 65, 1])
    >>> resample_abs_pos_embed(table, (4, 4)) is table
    True
    """
    new_size = (int(new_size[0]), int(new_size[1]))
    tokens = pos_embed.shape[1]
    if tokens == new_size[0] * new_size[1] + num_prefix_tokens:
        if old_size is None and new_size[0] == new_size[1]:
            return pos_embed
        if old_size is not None and tuple(old_size) == new_size:
            return pos_embed
    if old_size is None:
        side = int(math.sqrt(tokens - num_prefix_tokens))
        old_size = (side, side)
    old_size = (int(old_size[0]), int(old_size[1]))
    if old_size[0] * old_size[1] + num_prefix_tokens != tokens:
        raise ValueError(
            f"a position table of {tokens} rows is not {num_prefix_tokens} prefix rows and a {old_size} grid"
        )
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim, dtype = grid.shape[-1], grid.dtype
    grid = grid.float().reshape(1, old_size[0], old_size[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_size, mode=interpolation, antialias=antialias)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_size[0] * new_size[1], dim).to(dtype)
    return torch.cat([prefix, grid], dim=1) if num_prefix_tokens else grid


def pos_embed_for(pos_embed: torch.Tensor, rows: int, cols: int, num_prefix_tokens: int = 1) -> torch.Tensor:
    """The table for a ``rows x cols`` patch grid: ``pos_embed`` itself at its own (square) size, else
    :func:`resample_abs_pos_embed` of it. Accepts open_clip's 2-D ``(tokens, D)`` tables too.

    Examples
    --------
    >>> pos_embed_for(torch.zeros(1 + 9, 4), 6, 6).shape
    torch.Size([37, 4])
    """
    if pos_embed.ndim == 2:
        return pos_embed_for(pos_embed[None], rows, cols, num_prefix_tokens)[0]
    return resample_abs_pos_embed(pos_embed, (rows, cols), num_prefix_tokens=num_prefix_tokens)
