"""Write the TerraFM parity goldens (tests/goldens/terrafm/) from the reference implementation.

The reference (github.com/mbzuai-oryx/TerraFM, single file ``terrafm.py``) is GitHub-only code with no
stated licence, so it cannot live in this repository or be imported in CI. This script imports it from a
local copy, builds a *small* configuration (patch 16, 64 px images, D=32, 2 blocks, 4 heads) with seeded
random weights, runs it on seeded inputs through each of its three stems, and saves

* ``tiny_state_dict.pt``: the reference's ``state_dict()`` (float16: the weights are rounded to float16
  *before* the reference runs, so the stored values are exactly the ones that produced the outputs);
* ``cases.pt``: for ``s2_l2a``, ``s2_l1c`` and ``s1``: the network input (float16, also exact), the pooled
  output (``model(x)``: CLS after the final norm) and the grid (``extract_feature(x, [last])``);
* ``meta.json``: the small configuration, the reference file's SHA-256, and for the real ``terrafm_base``
  and ``terrafm_large`` configurations the full key set with shapes and the parameter count.

The L2A stem is unreachable through the reference ``forward()`` (it never passes ``is_l2a=True``), so for
``s2_l2a`` the script binds ``is_l2a=True`` to the reference's own ``PatchEmbed.forward`` and then calls
the reference's ``forward`` / ``extract_feature`` unchanged.

Usage::

    python scripts/goldens_terrafm.py --reference /path/to/TerraFM   # a clone, or the terrafm.py file
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import json
from pathlib import Path

import torch
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "tests" / "goldens" / "terrafm"
TINY = {"image_size": 64, "patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_ratio": 4.0}
CHANNELS = {"s2_l2a": 12, "s2_l1c": 12, "s1": 2}
BATCH = 2
SEED = 20250609


def import_reference(path: Path):
    file = path / "terrafm.py" if path.is_dir() else path
    spec = importlib.util.spec_from_file_location("terrafm_reference", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, hashlib.sha256(file.read_bytes()).hexdigest()


def build_tiny(ref):
    return ref.TerraFM(
        img_size=[TINY["image_size"]], patch_size=TINY["patch_size"], embed_dim=TINY["embed_dim"],
        depth=TINY["depth"], num_heads=TINY["num_heads"], mlp_ratio=TINY["mlp_ratio"], qkv_bias=True,
        norm_layer=functools.partial(nn.LayerNorm, eps=1e-6),
    ).eval()


def run_reference(model, x: torch.Tensor, sensor: str) -> tuple[torch.Tensor, torch.Tensor]:
    last = len(model.blocks) - 1
    embed = model.patch_embed
    if sensor == "s2_l2a":  # the reference's own PatchEmbed.forward, with the flag forward() never sets
        embed.forward = functools.partial(type(embed).forward, embed, is_l2a=True)
    try:
        with torch.no_grad():
            pooled = model(x)
            (grid,) = model.extract_feature(x, out_indices=[last])
    finally:
        embed.__dict__.pop("forward", None)
    return pooled, grid


def real_size(ref) -> dict:
    out = {}
    for name, factory in (("base", ref.terrafm_base), ("large", ref.terrafm_large)):
        model = factory()  # built for real (the reference calls .item() in __init__, so no meta device)
        out[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
        }
        del model
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, type=Path, help="TerraFM clone or its terrafm.py")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    ref, sha = import_reference(args.reference)

    torch.manual_seed(SEED)
    model = build_tiny(ref)
    with torch.no_grad():  # non-trivial values everywhere (sensor vectors, norms), rounded to float16
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
            param.copy_(param.half().float())

    cases = {}
    size = TINY["image_size"]
    for sensor, channels in CHANNELS.items():
        x = torch.rand(BATCH, channels, size, size).half().float()
        pooled, grid = run_reference(model, x, sensor)
        cases[sensor] = {"input": x.half(), "pooled": pooled.clone(), "grid": grid.clone()}
    # the three stems must give three different answers, or the goldens could not tell them apart
    assert not torch.allclose(cases["s2_l2a"]["pooled"], run_reference(model, cases["s2_l2a"]["input"].float(), "s2_l1c")[0])

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() for k, v in model.state_dict().items()}, args.out / "tiny_state_dict.pt")
    torch.save(cases, args.out / "cases.pt")
    meta = {
        "reference": "github.com/mbzuai-oryx/TerraFM terrafm.py",
        "reference_sha256": sha,
        "torch": torch.__version__,
        "seed": SEED,
        "batch": BATCH,
        "tiny": TINY,
        "real_size": real_size(ref),
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
