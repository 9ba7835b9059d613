"""Make the DOFA-CLIP parity goldens from the authors' open_clip fork (run by hand, not in CI).

The reference exists only as GitHub code (github.com/xiong-zhitong/DOFA-CLIP), so it cannot be a test
dependency. This script imports the fork from a local clone, builds a SMALL configuration of its
``GeoLB_VisionTransformer`` with seeded random weights, runs seeded inputs with two wavelength sets, and
writes to ``tests/goldens/dofa_clip/``:

* ``open_clip_model.safetensors``: the weights in the official open_clip layout (``visual.trunk.*`` plus
  stand-ins for ``text.*``, ``logit_scale``, ``logit_bias`` and ``translators.*``), float16 to keep the
  file small. The weights are rounded to float16 *before* the reference runs, so the outputs below are
  exactly those of the stored weights.
* ``reference_outputs.npz``: inputs, wavelengths, the trunk's pooled output (``visual.trunk(x, wvs)[0]``)
  and its normed tokens (``forward_features(x, wvs)[0]``), float32.
* ``real_size_layout.json``: key -> shape and parameter count of the fork's real ``so400m`` and ``b16``
  trunks (built only, never run), plus the small config and provenance.

Usage::

    python scripts/goldens_dofa_clip.py --reference /path/to/DOFA-CLIP [--out tests/goldens/dofa_clip]

The torchvision shim of ``tests/oracles.py`` is applied first (timm imports torchvision).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: The small configuration: 32 px images, patch 7 -> 4 x 4 tokens with a 4 px remainder the conv never
#: sees (the so400m analogue: 384 px, patch 14 -> 27 x 27 tokens, 6 px remainder). mlp_ratio is
#: so400m's non-integer one, so int(dim * ratio) truncation is exercised.
SMALL = {"img_size": 32, "patch_size": 7, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_ratio": 3.7362}
INPUTS = {
    "rgb": (2, [0.665, 0.56, 0.49]),
    "s2_9": (1, [0.665, 0.56, 0.49, 0.705, 0.74, 0.783, 0.842, 1.61, 2.19]),
}
REAL = {"so400m": "dofa_vit_so400m_patch14_siglip_384", "b16": "dofa_vit_base_patch16_siglip_224"}


def import_reference(reference: Path):
    sys.path.insert(0, str(ROOT / "tests"))
    from oracles import import_torchvision_cpu_safe

    import_torchvision_cpu_safe()
    src = reference / "open_clip" / "src"
    if not (src / "open_clip" / "timm_model.py").is_file():
        raise SystemExit(f"{src}/open_clip/timm_model.py not found: pass the root of a DOFA-CLIP clone")
    sys.path.insert(0, str(src))
    from open_clip import timm_model  # the fork's, not PyPI's: its source dir is first on sys.path

    if not hasattr(timm_model, "GeoLB_VisionTransformer"):
        raise SystemExit(f"imported {timm_model.__file__}, which is not the DOFA-CLIP fork")
    return timm_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="root of a DOFA-CLIP clone")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "goldens" / "dofa_clip")
    parser.add_argument("--reference-commit", help="commit of the clone, if it has no .git (e.g. a snapshot)")
    parser.add_argument("--skip-real-size", action="store_true", help="do not rebuild the real-size layouts")
    args = parser.parse_args()

    import torch
    from safetensors.torch import save_file

    timm_model = import_reference(args.reference)  # applies the torchvision shim before timm is imported
    import timm
    args.out.mkdir(parents=True, exist_ok=True)

    # -- small config, random weights, rounded to float16 -----------------------------------------------
    torch.manual_seed(0)
    ref = timm_model.GeoLB_VisionTransformer(class_token=False, global_pool="map", **SMALL).eval()
    with torch.no_grad():  # non-trivial values everywhere (LayerNorms, biases, latent included)
        for param in ref.parameters():
            param.add_(torch.randn_like(param) * 0.02)
            param.copy_(param.half().float())
    state = {f"visual.trunk.{k}": v.detach().half().contiguous() for k, v in ref.state_dict().items()}
    # Stand-ins for what the official file holds besides the image trunk (dropped by the adapter).
    state["text.token_embedding.weight"] = torch.randn(8, 4).half()
    state["text.transformer.resblocks.0.attn.in_proj_weight"] = torch.randn(12, 4).half()
    state["logit_scale"] = torch.tensor([2.3]).half()
    state["logit_bias"] = torch.tensor([-10.0]).half()
    state["translators.dinov2_vitl14_reg.proj.weight"] = torch.randn(4, 4).half()
    save_file(state, str(args.out / "open_clip_model.safetensors"))

    arrays = {}
    gen = torch.Generator().manual_seed(1)
    for name, (batch, waves) in INPUTS.items():
        x = torch.randn(batch, len(waves), SMALL["img_size"], SMALL["img_size"], generator=gen)
        wvs = torch.tensor(waves)
        with torch.no_grad():
            pooled, _taps = ref(x, wvs)
            tokens, _ = ref.forward_features(x, wvs)
        arrays[f"{name}_x"] = x.numpy()
        arrays[f"{name}_wavelengths"] = np.asarray(waves, dtype=np.float32)
        arrays[f"{name}_pooled"] = pooled.numpy()
        arrays[f"{name}_tokens"] = tokens.numpy()
    np.savez(args.out / "reference_outputs.npz", **arrays)

    # -- real-size layouts (build only) -------------------------------------------------------------------
    layout_path = args.out / "real_size_layout.json"
    layout = json.loads(layout_path.read_text()) if layout_path.is_file() else {}
    if not args.skip_real_size:
        for variant, fn_name in REAL.items():
            model = getattr(timm_model, fn_name)()
            layout[variant] = {
                "timm_name": fn_name,
                "param_count": sum(p.numel() for p in model.parameters()),
                "keys": {k: list(v.shape) for k, v in model.state_dict().items()},
            }
            del model
    commit = args.reference_commit
    try:
        commit = commit or subprocess.run(
            ["git", "-C", str(args.reference), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:  # a snapshot without .git
        commit = "unknown"
    commit = commit or "unknown"
    layout["provenance"] = {
        "reference": "github.com/xiong-zhitong/DOFA-CLIP open_clip/src/open_clip/timm_model.py GeoLB_VisionTransformer",
        "reference_commit": commit,
        "timm": timm.__version__,
        "torch": torch.__version__,
        "small_config": SMALL,
        "inputs": {k: {"batch": b, "wavelengths": w} for k, (b, w) in INPUTS.items()},
    }
    layout_path.write_text(json.dumps(layout, indent=1, sort_keys=True) + "\n")
    for path in sorted(args.out.iterdir()):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
