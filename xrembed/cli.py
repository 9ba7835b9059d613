"""The ``xrembed`` command.

    xrembed embed SOURCE --model dofa --out out.zarr [--weights FILE] [--variant base] [--output grid]

SOURCE is a raster file, a folder of single-band rasters, or ``sample`` (the bundled Sentinel-2 crop).
The result is a Zarr store that reads back with its CRS:
``xr.open_zarr("out.zarr", decode_coords="all").embeddings.rio.crs``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from .errors import XrembedError
from .options import PRECISIONS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xrembed", description="Remote-sensing embeddings as georeferenced rasters.")
    commands = parser.add_subparsers(dest="command", required=True)

    embed = commands.add_parser("embed", help="embed a raster and write the result to Zarr")
    embed.add_argument("source", help="raster file, folder of single-band rasters, or 'sample'")
    embed.add_argument("--model", default="dofa", help="model id (see `xrembed models`; default: dofa)")
    embed.add_argument("--out", required=True,
                       help="output Zarr store; replaced if xrembed wrote it, else refused unless --overwrite")
    embed.add_argument("--overwrite", action="store_true",
                       help="replace --out even if xrembed did not write it (its contents are deleted)")
    embed.add_argument("--weights", default=None, help="checkpoint file, or 'random'; default: official weights from the Hub")
    embed.add_argument("--variant", default=None, help="model variant (e.g. base, large)")
    embed.add_argument("--output", default="grid", choices=["grid", "pooled"])
    embed.add_argument("--input-prep", default="auto", choices=["tile", "resize", "auto"])
    embed.add_argument("--bands", default=None, help="comma-separated bands to use, e.g. B04,B03,B02")
    embed.add_argument("--resolution", type=float, default=None, help="target pixel size when stacking bands")
    embed.add_argument("--device", default="auto")
    embed.add_argument("--batch-size", type=int, default=None)
    embed.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    embed.add_argument("--quiet", action="store_true", help="no progress bar")

    models = commands.add_parser("models", help="list the registered models")
    models.add_argument("--describe", default=None, metavar="MODEL", help="print one model's input contract")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "models":
            return _models(args)
        return _embed(args)
    except XrembedError as err:
        print(f"xrembed: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `xrembed models | head`: the reader left; stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:  # an unwritable --out, a full disk: the reason, not a traceback
        print(f"xrembed: error: {err.strerror or err}: {err.filename or getattr(args, 'out', '')}", file=sys.stderr)
        return 2


def _models(args) -> int:
    import json

    from .catalog import describe_model, list_models

    if args.describe:
        print(json.dumps(describe_model(args.describe), indent=2, default=str))
    else:
        print("\n".join(list_models()))
    return 0


def _embed(args) -> int:
    from . import open_raster
    from .export import ownership

    # Before any work: never wipe a folder or file that xrembed cannot prove it wrote.
    ownership.check_replaceable(args.out, overwrite=args.overwrite, what="output", flag="--overwrite")
    _check_out_folder(args.out)
    bands = [b.strip() for b in args.bands.split(",")] if args.bands else None
    raster = open_raster(args.source, resolution=args.resolution)
    original_format = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *rest: f"xrembed: warning: {message}\n"
    try:
        return _embed_raster(args, raster, bands)
    finally:
        warnings.formatwarning = original_format


def _check_out_folder(out: str) -> None:
    """Refuse an --out that cannot be created (a file in its path), before any pixel is read."""
    from pathlib import Path

    from .errors import OptionError

    parent = Path(out).absolute().parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise OptionError(f"--out {out} cannot be created: {existing} is a file, not a folder; choose another path.")


def _embed_raster(args, raster, bands) -> int:
    import dask
    import xarray as xr

    from .errors import RandomWeightsWarning
    from .export import ownership

    with warnings.catch_warnings():
        warnings.simplefilter("always", RandomWeightsWarning)
        emb = raster.rsembed.embed(
            args.model, output=args.output, input_prep=args.input_prep, bands=bands, variant=args.variant,
            weights=args.weights, device=args.device, batch_size=args.batch_size, precision=args.precision,
        )
    shape = " x ".join(f"{d}={n}" for d, n in emb.sizes.items())
    print(f"xrembed: {args.model}/{emb.attrs['variant']} on {args.source}: {shape} ({emb.attrs['input_prep']})", file=sys.stderr)
    start = time.perf_counter()
    ds = emb.to_dataset()
    ds.attrs[ownership.MARK] = ownership.mark("cli-embed")
    # mode="w" below removes what is at --out: checked again now that the embedding is set up.
    ownership.remove(args.out, overwrite=args.overwrite, what="output", flag="--overwrite")
    # Zarr v2 + Blosc, consolidated: what GDAL (QGIS, rasterio) opens as `ZARR:"out.zarr":/embeddings`, CRS
    # included; the GDAL in rasterio's wheels (3.10) refuses Zarr v3 ("Unsupported codec: bytes").
    import numcodecs

    ds["embeddings"].encoding["compressors"] = (numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),)
    write = ds.to_zarr(args.out, mode="w", compute=False, consolidated=True, zarr_format=2)
    if args.quiet:
        dask.compute(write)
    else:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr):
            dask.compute(write)
    elapsed = time.perf_counter() - start
    check = xr.open_zarr(args.out, decode_coords="all")["embeddings"]
    crs = check.rio.crs.to_string() if "y" in check.dims else emb.attrs.get("input_crs")
    print(f"xrembed: wrote {args.out} in {elapsed:.1f} s (crs {crs})", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
