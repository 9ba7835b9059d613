"""Tile-border seams in an embedding grid of the real Sentinel-2 scene: how much more neighbouring cells
differ across a tile border than inside a tile.

    python benchmarks/bench_seams.py [--model dofa] [--size 672] [--weights random] [--stride 112]

A ``size`` x ``size`` px window of ``../shared/data/S2A_29RKH_20200219_0_L2A`` (100 m, all bands resampled
to one grid by ``open_raster``) is embedded with ``input_prep="tile"`` (tiles of the model's input size
on the patch lattice). For every pair of horizontally or vertically adjacent output cells the cosine
jump ``1 - cos(e_a, e_b)`` is computed; pairs that straddle a tile border are "across", the others
"inside". The statistic is ``mean(across) / mean(inside)``: 1 means no seam. The same ratio computed on
the input pixels themselves (the band vectors averaged over each cell) is the scene's own baseline, since
the scene does not know where tiles fall. The same window is then embedded with overlapping tiles
(``InputPrepSpec.tile(tile_stride=stride)``, each cell from the nearest-centre tile); there "across" are the
pairs whose cells come from different tiles. With ``--weights random`` (seeded), the figure measures the
tiling's effect on the architecture, not on trained features; pass a checkpoint path for those.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np

import xrembed

warnings.simplefilter("ignore", xrembed.errors.RandomWeightsWarning)
SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "S2A_29RKH_20200219_0_L2A"


def tile_starts(tokens: int, tile: int, stride: int | None) -> np.ndarray:
    """Per cell along an axis, the start (in patches) of the tile it comes from."""
    from xrembed.tiling import overlap_owners, tile_layout

    owners = overlap_owners(tokens, tile, stride) if stride else [0] * tokens
    starts = []
    for cell, offset in enumerate(owners):
        for t in tile_layout(tokens - offset, tile):
            if t.own_start <= cell - offset < t.own_stop:
                starts.append(offset + t.start)
                break
    return np.asarray(starts)


def cosine_jumps(grid: np.ndarray, starts_y: np.ndarray, starts_x: np.ndarray) -> dict:
    """Mean ``1 - cos`` between adjacent cells from different tiles ("across") and from the same tile
    ("inside"). ``grid`` is (D, H, W); ``starts_*`` say which tile each row/column comes from."""
    unit = grid / np.linalg.norm(grid, axis=0, keepdims=True)
    across, inside = [], []
    for axis, starts in ((1, starts_y), (2, starts_x)):
        a = np.take(unit, np.arange(unit.shape[axis] - 1), axis=axis)
        b = np.take(unit, np.arange(1, unit.shape[axis]), axis=axis)
        jump = 1.0 - (a * b).sum(axis=0)
        border = starts[1:] != starts[:-1]
        pick = border[:, None] if axis == 1 else border[None, :]
        across.append(jump[np.broadcast_to(pick, jump.shape)])
        inside.append(jump[np.broadcast_to(~pick, jump.shape)])
    across, inside = np.concatenate(across), np.concatenate(inside)
    across, inside = across[np.isfinite(across)], inside[np.isfinite(inside)]
    return {"across_mean": float(across.mean()), "inside_mean": float(inside.mean()),
            "ratio": float(across.mean() / inside.mean()), "pairs_across": int(across.size),
            "pairs_inside": int(inside.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dofa")
    parser.add_argument("--size", type=int, default=672)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--stride", type=int, default=None, help="overlap stride in px (default: half a tile)")
    args = parser.parse_args()

    info = xrembed.describe_model(args.model)
    patch, tile = info["patch_size"], info["image_size"]
    tile_cells = tile // patch
    stride = args.stride or tile // 2
    da = xrembed.open_raster(SCENE)
    y0, x0 = 100, 100  # away from the scene's nodata margin
    window = da.isel(y=slice(y0, y0 + args.size), x=slice(x0, x0 + args.size))
    bands = info["bands"]
    pixels = np.asarray(window.sel(band=bands).values, dtype=np.float64)
    result = {"model": args.model, "weights": args.weights, "window_px": args.size, "tile_cells": tile_cells,
              "stride_px": stride, "platform": platform.platform(), "numpy": np.__version__}
    for name, prep in (("abutting", "tile"), ("overlap", xrembed.InputPrepSpec.tile(tile_stride=stride))):
        start = time.perf_counter()
        if name == "abutting":
            emb = window.rsembed.embed(args.model, weights=args.weights, input_prep=prep)
        else:
            from xrembed.overlap import embed_overlapping

            emb = embed_overlapping(window, args.model, tile_stride=stride, weights=args.weights)
        grid = np.asarray(emb.compute().values, dtype=np.float64)
        seconds = time.perf_counter() - start
        h, w = grid.shape[1:]
        sy = tile_starts(h, tile_cells, None if name == "abutting" else stride // patch)
        sx = tile_starts(w, tile_cells, None if name == "abutting" else stride // patch)
        # the scene's own baseline at the same pairs: the model's input bands averaged over each cell
        cells = pixels.reshape(len(bands), h, patch, w, patch).mean(axis=(2, 4))
        result[name] = {"grid": list(grid.shape), "seconds": round(seconds, 1),
                        "embedding": cosine_jumps(grid, sy, sx), "input_cells": cosine_jumps(cells, sy, sx)}
        if name == "overlap":  # the abutting layout's borders, in the overlapped grid
            ay, ax = tile_starts(h, tile_cells, None), tile_starts(w, tile_cells, None)
            result[name]["embedding_at_abutting_borders"] = cosine_jumps(grid, ay, ax)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
