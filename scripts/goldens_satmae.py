"""Write the SatMAE golden files used by ``tests/models/test_satmae.py``, from the upstream reference code.

SatMAE is GitHub-only code (github.com/sustainlab-group/SatMAE, CC BY-NC 4.0), so it is not a test
dependency: this script runs it once against a local clone and stores small results in
``tests/goldens/satmae/``::

    git clone https://github.com/sustainlab-group/SatMAE /tmp/SatMAE
    python scripts/goldens_satmae.py --reference /tmp/SatMAE

It writes

* ``mae_small_pretrain.pth``: a small ``MaskedAutoencoderViT`` (32 px, patch 8, D=32, 2 blocks, decoder
  D=16 with 1 block) with random weights, saved in the official pre-train file format: a dict with
  ``model`` (the full MAE state dict, decoder included), ``optimizer``, ``epoch``, ``scaler`` and ``args``
  (an ``argparse.Namespace``), as ``util/misc.save_model`` does;
* ``mae_small_outputs.pt``: the input, the reference's ``forward_encoder(x, mask_ratio=0.0)`` outputs:
  the CLS token, the patch tokens as returned (shuffled), ``ids_restore``, and the patch tokens put back
  in spatial order with ``gather(..., ids_restore)``; plus ``models_vit.VisionTransformer``'s CLS output;
* ``mae_vit_large_keys.json``: key -> shape of the real-size ``mae_vit_large_patch16`` (no forward run).

The upstream code predates NumPy 1.24 and timm 0.6: this script sets ``np.float = float`` and drops the
``qk_scale`` keyword that its ``Block(...)`` calls pass (both only for the duration of the run).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "goldens" / "satmae"

SMALL = dict(
    img_size=32, patch_size=8, in_chans=3, embed_dim=32, depth=2, num_heads=4,
    decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=4, mlp_ratio=4.0,
)


def import_reference(path: Path):
    sys.path.insert(0, str(ROOT / "tests"))
    from oracles import import_torchvision_cpu_safe

    import_torchvision_cpu_safe()
    import timm.models.vision_transformer as tvt

    np.float = float  # upstream util/pos_embed.py uses the removed alias
    original_block = tvt.Block

    def block_without_qk_scale(*args, qk_scale=None, **kwargs):
        return original_block(*args, **kwargs)

    tvt.Block = block_without_qk_scale
    sys.path.insert(0, str(path))
    try:
        import models_mae
        import models_vit
    finally:
        tvt.Block = original_block
    return models_mae, models_vit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, type=Path, help="local clone of sustainlab-group/SatMAE")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    models_mae, models_vit = import_reference(args.reference)
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    norm = partial(nn.LayerNorm, eps=1e-6)
    mae = models_mae.MaskedAutoencoderViT(norm_layer=norm, **SMALL).eval()
    with torch.no_grad():  # non-trivial values everywhere (biases, norms, cls_token, pos_embed too)
        for param in mae.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    namespace = argparse.Namespace(model="mae_small_test", input_size=32, patch_size=8, mask_ratio=0.75, epochs=1)
    checkpoint = {"model": mae.state_dict(), "optimizer": {}, "epoch": 0, "scaler": {}, "args": namespace}
    torch.save(checkpoint, args.out / "mae_small_pretrain.pth")

    x = torch.randn(2, 3, SMALL["img_size"], SMALL["img_size"])
    with torch.no_grad():
        torch.manual_seed(1)
        latent, _, ids_restore = mae.forward_encoder(x, mask_ratio=0.0)
        shuffled = latent[:, 1:, :]
        spatial = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, shuffled.shape[-1]))

        vit = models_vit.VisionTransformer(
            img_size=SMALL["img_size"], patch_size=SMALL["patch_size"], in_chans=3, embed_dim=SMALL["embed_dim"],
            depth=SMALL["depth"], num_heads=SMALL["num_heads"], mlp_ratio=4, qkv_bias=True, norm_layer=norm,
            num_classes=0, global_pool=False,
        ).eval()
        encoder = {k: v for k, v in mae.state_dict().items() if not k.startswith(("decoder_", "mask_token"))}
        missing, unexpected = vit.load_state_dict(encoder, strict=False)
        assert not unexpected and set(missing) <= {"head.weight", "head.bias"}, (missing, unexpected)
        vit_cls = vit.forward_features(x)

    torch.save(
        {
            "config": dict(SMALL),
            "input": x,
            "cls": latent[:, 0],
            "patch_tokens_shuffled": shuffled,
            "ids_restore": ids_restore,
            "patch_tokens_spatial": spatial,
            "models_vit_cls": vit_cls,
        },
        args.out / "mae_small_outputs.pt",
    )

    large = models_mae.mae_vit_large_patch16_dec512d8b()
    keys = {k: list(v.shape) for k, v in large.state_dict().items()}
    (args.out / "mae_vit_large_keys.json").write_text(json.dumps(keys, indent=0, sort_keys=True) + "\n")
    print(f"wrote goldens to {args.out}: CLS max |MAE - models_vit| = {(latent[:, 0] - vit_cls).abs().max():.2e}")


if __name__ == "__main__":
    main()
