"""Write the Galileo parity goldens (tests/goldens/galileo/) from the reference implementation.

The reference (github.com/nasaharvest/galileo, MIT) is GitHub-only: it cannot be installed from a package
registry, and its code must not live in this repository. This script imports it from a local checkout
(``single_file_galileo.py`` for the network; ``src/data/dataset.py`` for the pre-training ``Normalizer``,
``to_cartesian`` and ``Dataset.calculate_ndi``; ``config/normalization.json`` for the statistics), builds a
*small* encoder (D=64, 2 blocks, 4 heads, patch 8) with seeded random weights, runs it on seeded raw inputs
prepared exactly as the pre-training dataset prepares them, and saves

* ``encoder.pt``: the reference's ``state_dict()`` in the release layout (flat, as ``models/<size>/encoder.pt``
  on the Hub), float16-exact (the weights are rounded to float16 *before* the reference runs), and
  ``config.json`` beside it (``{"model": {"encoder": ...}}``, what ``Encoder.load_from_folder`` reads);
* ``cases.pt``: per case (``s2``: three time steps; ``s1``: two, at 20 m; ``s1s2``: one), the raw input
  ``(T, C, H, W)`` in xrembed's band order, its months, centre (lon, lat) and pixel size, the reference's
  normalised space-time input ``(H, W, T, 13)``, and its outputs: ``grid`` (``(D, h, w)``, from
  ``Encoder.apply_mask_and_average_tokens_per_patch``) and ``pooled`` (``(D,)``, ``Encoder.average_tokens``);
* ``s2_p4``: the ``s2`` case's outputs at ``patch_size=4`` (the reference resamples its 8 x 8 kernels);
* with ``--release-nano``: the published nano weights' outputs on the ``s2`` case (``cases.pt`` key
  ``release_nano_s2``), for an opt-in test that downloads them;
* ``meta.json``: the small configuration, the SHA-256 of the reference files, the ``"13"`` statistics of
  ``config/normalization.json``, and for the real ``nano``, ``tiny`` and ``base`` configurations the full key
  set with shapes and the parameter count (and, given ``--release-nano``, the key set of the published nano
  ``encoder.pt``).

Usage::

    python scripts/goldens_galileo.py --reference /path/to/galileo [--release-nano /path/to/nano/encoder.pt]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "goldens" / "galileo"
TINY = {"embedding_size": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 4, "max_sequence_length": 24,
        "max_patch_size": 8, "freeze_projections": False, "drop_path": 0.0}
REAL = {
    "nano": {"embedding_size": 128, "depth": 4, "num_heads": 8},
    "tiny": {"embedding_size": 192, "depth": 12, "num_heads": 3},
    "base": {"embedding_size": 768, "depth": 12, "num_heads": 12},
}
SEED = 20250214
SIZE = 32  # px: 4 x 4 patches of 8
S1 = ["VV", "VH"]
S2 = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]  # xrembed names, Galileo's order
#: name -> (bands, months, (lon, lat), pixel size m)
CASES = {
    "s2": (S2, [0, 6, 11], (-13.25, 27.75), 10.0),
    "s1": (S1, [3, 4], (77.0, 10.2), 20.0),
    "s1s2": (S1 + S2, [5], (6.15, 49.11), 10.0),
}


def import_reference(root: Path):
    spec = importlib.util.spec_from_file_location("single_file_galileo", root / "single_file_galileo.py")
    single = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(single)
    sys.path.insert(0, str(root))
    from src.data import dataset  # the pre-training Normalizer, to_cartesian and NDVI

    files = [root / "single_file_galileo.py", root / "src" / "data" / "dataset.py",
             root / "config" / "normalization.json"]
    return single, dataset, {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def raw_values(rng, bands, frames):
    """Raw values ``(T, C, H, W)``: reflectance 0..10000 (a few zeros, for NDVI's 0 / 0), dB for radar."""
    out = np.empty((frames, len(bands), SIZE, SIZE), dtype=np.float32)
    for c, band in enumerate(bands):
        if band in S1:
            out[:, c] = rng.uniform(-25.0, -5.0, (frames, SIZE, SIZE)).round(2)
        else:
            out[:, c] = rng.integers(0, 8000, (frames, SIZE, SIZE))
    if "B04" in bands:  # B8 + B4 == 0 in one corner: NDVI is 0 there
        out[0, bands.index("B04"), :2, :2] = 0.0
        out[0, bands.index("B08"), :2, :2] = 0.0
    return out


def reference_inputs(single, dataset, root, raw, bands, months, lonlat):
    """The reference's nine encoder inputs for one sample, prepared as the pre-training Dataset does."""
    names = [b.replace("B0", "B") for b in bands]  # B02 -> B2 (B8A, B11, B12 unchanged)
    frames = raw.shape[0]
    eo_bands = dataset.EO_SPACE_TIME_BANDS  # S1 + S2, without NDVI
    space_time = np.zeros((SIZE, SIZE, frames, len(eo_bands)), dtype=np.float64)
    for c, name in enumerate(names):
        space_time[:, :, :, eo_bands.index(name)] = raw[:, c].transpose(1, 2, 0)
    ndvi = dataset.Dataset.calculate_ndi(space_time, band_1="B8", band_2="B4")
    space_time = np.concatenate([space_time, ndvi], axis=-1)  # (H, W, T, 13)
    static = np.zeros(len(dataset.STATIC_BANDS), dtype=np.float64)
    lon, lat = lonlat
    location = dataset.to_cartesian(float(lat), float(lon))
    static[[dataset.STATIC_BANDS.index(b) for b in single.LOCATION_BANDS]] = location
    normalizer = dataset.Normalizer(
        std=True, normalizing_dicts=dataset.Dataset.load_normalization_values(root / "config" / "normalization.json"),
        std_multiplier=2,
    )
    space_time = normalizer(space_time)
    static = normalizer(static)

    groups = list(single.SPACE_TIME_BANDS_GROUPS_IDX)
    present = set()
    if "VV" in names:
        present.add("S1")
    if "B2" in names:
        present |= {g for g in groups if g.startswith("S2")} | {"NDVI"}
    s_t_m = np.ones((SIZE, SIZE, frames, len(groups)))
    s_t_m[..., [groups.index(g) for g in present]] = 0
    st_m = np.ones(len(single.STATIC_BAND_GROUPS_IDX))
    st_m[list(single.STATIC_BAND_GROUPS_IDX).index("location")] = 0

    def t(a, dtype=torch.float32):
        return torch.as_tensor(np.asarray(a), dtype=dtype)[None]

    return (
        t(space_time), torch.zeros(1, SIZE, SIZE, len(single.SPACE_BANDS)),
        torch.zeros(1, frames, len(single.TIME_BANDS)),
        t(static), t(s_t_m), torch.ones(1, SIZE, SIZE, len(single.SPACE_BAND_GROUPS_IDX)),
        torch.ones(1, frames, len(single.TIME_BAND_GROUPS_IDX)), t(st_m), t(months, torch.long),
    )


def run_reference(model, inputs, resolution, patch_size=8):
    with torch.no_grad():
        out = model(*inputs, patch_size=patch_size, input_resolution_m=resolution)
        tokens = out[:8]
        per_patch = model.apply_mask_and_average_tokens_per_patch(*tokens)  # (B, h * w, D)
        pooled = model.average_tokens(*tokens)  # (B, D)
    side = SIZE // patch_size
    grid = per_patch[0].T.reshape(-1, side, side)
    return grid, pooled[0]


def real_size(single) -> dict:
    out = {}
    for name, config in REAL.items():
        model = single.Encoder(max_patch_size=8, mlp_ratio=4, max_sequence_length=24, **config)
        out[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
        }
        del model
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, type=Path, help="a checkout of github.com/nasaharvest/galileo")
    parser.add_argument("--release-nano", type=Path, help="the published data/models/nano/encoder.pt (optional)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    single, dataset, shas = import_reference(args.reference)

    torch.manual_seed(SEED)
    model = single.Encoder(**TINY).eval()
    with torch.no_grad():  # non-trivial values everywhere (channel embeddings, norms), rounded to float16
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
            param.copy_(param.half().float())
    state = {k: v.clone() for k, v in model.state_dict().items()}

    rng = np.random.default_rng(SEED)
    cases = {}
    for name, (bands, months, lonlat, resolution) in CASES.items():
        raw = raw_values(rng, bands, len(months))
        inputs = reference_inputs(single, dataset, args.reference, raw, bands, months, lonlat)
        grid, pooled = run_reference(model, inputs, resolution)
        cases[name] = {
            "raw": torch.from_numpy(raw), "bands": bands, "months": months, "lonlat": list(lonlat),
            "resolution_m": resolution, "normalised": inputs[0][0].clone(), "grid": grid.clone(),
            "pooled": pooled.clone(),
        }
    # month, location and resolution must each change the answer, or the goldens could not tell them apart
    base_inputs = reference_inputs(single, dataset, args.reference, cases["s2"]["raw"].numpy(), S2, [0, 6, 11],
                                   CASES["s2"][2])
    other_month = list(base_inputs)
    other_month[8] = torch.tensor([[1, 6, 11]])
    assert not torch.allclose(run_reference(model, other_month, 10.0)[1], cases["s2"]["pooled"])
    assert not torch.allclose(run_reference(model, base_inputs, 20.0)[1], cases["s2"]["pooled"])
    # the s2 case on 4 px patches: the reference resamples the 8 x 8 kernels (FlexiPatchEmbed's pinv resize)
    grid, pooled = run_reference(model, base_inputs, CASES["s2"][3], patch_size=4)
    cases["s2_p4"] = {"grid": grid.clone(), "pooled": pooled.clone()}

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() for k, v in state.items()}, args.out / "encoder.pt")
    (args.out / "config.json").write_text(json.dumps({"model": {"encoder": TINY}}, indent=1) + "\n")
    torch.save(cases, args.out / "cases.pt")
    norm = json.loads((args.reference / "config" / "normalization.json").read_text())
    meta = {
        "reference": "github.com/nasaharvest/galileo",
        "reference_sha256": shas,
        "torch": torch.__version__,
        "seed": SEED,
        "tiny": TINY,
        "normalization_13": norm["13"],
        "space_time_bands": list(dataset.SPACE_TIME_BANDS),
        "real_size": real_size(single),
    }
    if args.release_nano is not None:
        release = torch.load(args.release_nano, map_location="cpu", weights_only=True)
        meta["release_nano"] = {k.replace(".backbone", ""): list(v.shape) for k, v in release.items()}
        meta["release_nano_sha256"] = hashlib.sha256(args.release_nano.read_bytes()).hexdigest()
        # the published nano weights on the s2 case (for the opt-in network test that downloads them)
        nano = single.Encoder.load_from_folder(args.release_nano.parent, device=torch.device("cpu")).eval()
        grid, pooled = run_reference(nano, base_inputs, CASES["s2"][3])
        cases["release_nano_s2"] = {"grid": grid.clone(), "pooled": pooled.clone()}
        torch.save(cases, args.out / "cases.pt")
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
