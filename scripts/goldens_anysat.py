"""Write the AnySat parity goldens (tests/goldens/anysat/) from the reference implementation.

The reference (github.com/gastruc/AnySat, MIT) is GitHub-only code whose ``hubconf.py`` pulls in its
whole training stack (Lightning, Hydra) only for the other entry points, so it is not a dependency of
xrembed: this script imports ``hubconf.py`` from a local clone (its ``AnySat`` class needs only torch
for the path used here), builds a *small* configuration with seeded random weights (the release's layout:
a projector for every modality; D=64, 2 blocks, 4 heads; ``flash_attn=False``), runs it on seeded
Sentinel-2 time series through ``AnySat.forward`` (``output='patch'`` and ``output='tile'``), and saves

* ``tiny_state_dict.pt``: the reference's ``AnyModule`` state dict (float16: the weights are rounded to
  float16 *before* the reference runs, so the stored values are exactly the ones that produced the outputs;
  the tests save it as the release does, ``{'state_dict': ...}``);
* ``cases.pt``: per case, the network input ``(B, T, 10, H, W)`` (float16, exact), the day numbers
  ``(B, T)``, the patch size in metres, and the reference's patch grid ``(B, n, n, D)`` and tile vector;
* ``meta.json``: the small configuration, the reference commit's files' SHA-256, and for the released
  ``base`` configuration the full key set with shapes and the parameter count.

Usage::

    python scripts/goldens_anysat.py --reference /path/to/AnySat   # a clone of github.com/gastruc/AnySat
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "goldens" / "anysat"
TINY = {"embed_dim": 64, "depth": 2, "num_heads": 4}
#: name -> (batch, dates, pixels per side, patch size in metres)
CASES = {
    "single_date_p20": (2, 1, 8, 20),
    "series_p20": (2, 4, 8, 20),
    "series_p40": (1, 3, 16, 40),
    "series_p10": (1, 2, 6, 10),
}
SEED = 20251201
#: Files of the reference whose code the goldens exercise (their hashes go into meta.json).
REFERENCE_FILES = (
    "hubconf.py",
    "src/models/networks/encoder/Any_multi.py",
    "src/models/networks/encoder/Transformer.py",
    "src/models/networks/encoder/utils/ltae.py",
    "src/models/networks/encoder/utils/utils_ViT.py",
    "src/models/networks/encoder/utils/irpe.py",
    "src/models/networks/encoder/utils/pos_embed.py",
    "src/models/networks/encoder/utils/patch_embeddings.py",
)


def import_reference(root: Path):
    for entry in (str(root / "src"), str(root)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    spec = importlib.util.spec_from_file_location("anysat_hubconf", root / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hashes = {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in REFERENCE_FILES}
    return module, hashes


def small_config(hub, embed_dim: int, depth: int, num_heads: int) -> dict:
    """The reference's ``get_default_config('tiny')`` (D=256, 2 blocks, 4 heads) with every width scaled
    to ``embed_dim`` (256 -> D, 512 -> 2 D, 128 -> D/2, 32 -> D/8), and ``depth`` / ``num_heads`` set."""
    dim, heads = embed_dim, num_heads
    config = copy.deepcopy(hub.get_default_config("tiny"))
    widths = {256: dim, 512: 2 * dim, 128: dim // 2, 32: dim // 8}
    for spec in config["projectors"].values():
        for key in ("embed_dim",):
            if key in spec:
                spec[key] = widths[spec[key]]
        for key in ("mlp", "mlp_in"):
            if key in spec:
                spec[key] = [widths[w] for w in spec[key]]
    config["spatial_encoder"].update(embed_dim=dim, depth=depth, num_heads=heads)
    config.update(embed_dim=dim, depth=depth, num_heads=heads)
    return config


def build(hub, config: dict | None, size: str = "tiny"):
    """``hub.AnySat(size, flash_attn=False)``, built from ``config`` if given (else the size's default)."""
    original = hub.get_default_config
    if config is not None:
        hub.get_default_config = lambda model_size="base": copy.deepcopy(config)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return hub.AnySat(model_size=size, flash_attn=False).eval()
    finally:
        hub.get_default_config = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, type=Path, help="a clone of github.com/gastruc/AnySat")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    hub, hashes = import_reference(args.reference.resolve())

    torch.manual_seed(SEED)
    model = build(hub, small_config(hub, **TINY))
    with torch.no_grad():  # non-trivial values everywhere (norms, queries, iRPE tables), rounded to float16
        for param in model.model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
            param.copy_(param.half().float())

    cases = {}
    for name, (batch, dates, side, patch_m) in CASES.items():
        x = (torch.randn(batch, dates, 10, side, side) * 0.5).half()
        days = torch.randint(1, 366, (batch, dates))
        with torch.no_grad():
            grid = model({"s2": x.float(), "s2_dates": days}, patch_size=patch_m, output="patch")
            tile = model({"s2": x.float(), "s2_dates": days}, patch_size=patch_m, output="tile")
        cases[name] = {"input": x, "days": days, "patch_size_m": patch_m, "grid": grid.clone(), "tile": tile.clone()}
    # the date encoding must matter, or the goldens could not tell a wrong date from a right one
    with torch.no_grad():
        case = cases["series_p20"]
        shifted = model({"s2": case["input"].float(), "s2_dates": case["days"] + 90}, patch_size=20, output="tile")
    assert (shifted - case["tile"]).abs().max() > 1e-3

    base = build(hub, None, "base")
    real = {"base": {
        "parameters": sum(p.numel() for p in base.model.parameters()),
        "shapes": {k: list(v.shape) for k, v in base.model.state_dict().items()},
    }}

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() for k, v in model.model.state_dict().items()}, args.out / "tiny_state_dict.pt")
    torch.save(cases, args.out / "cases.pt")
    meta = {
        "reference": "github.com/gastruc/AnySat hubconf.AnySat (flash_attn=False), forward(output='patch'|'tile')",
        "reference_sha256": hashes,
        "torch": torch.__version__,
        "seed": SEED,
        "tiny": TINY,
        "cases": {name: dict(zip(("batch", "dates", "pixels", "patch_size_m"), spec)) for name, spec in CASES.items()},
        "real_size": real,
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
