"""The OlmoEarth release layout (a folder with ``config.json`` and ``weights.pth``), for writing test checkpoints.

The Hub repositories ``allenai/OlmoEarth-v1-*`` hold the whole pre-training model's state dict in
``weights.pth`` (``encoder.*``, ``decoder.*``, ``target_encoder.*``) and its training config in
``config.json``, which the package's ``load_model_from_path`` reads. :func:`release_files` writes both for a
given encoder state, so a test can load the folder with the package's own loader and compare.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .olmoearth import ENCODER_INPUTS, OlmoEarth, olmoearth_package


def _model_and_config(adapter: OlmoEarth):
    """The package's whole ``LatentMIM`` for ``adapter``'s variant and the config it was built from."""
    package = olmoearth_package()
    from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.nn.latent_mim import LatentMIMConfig

    seen: dict[str, Any] = {}
    build = LatentMIMConfig.build

    def capture(self):
        seen["config"] = self
        return build(self)

    LatentMIMConfig.build = capture
    try:
        model = package.OlmoEarthPretrain_v1(adapter.size, adapter.version).model
    finally:
        LatentMIMConfig.build = build
    return model, seen["config"]


def release_state(adapter: OlmoEarth, encoder_state: dict, torch) -> dict:
    """``weights.pth`` for ``encoder_state``: the whole model's keys, encoder copied into ``target_encoder``,
    the decoder at small random values."""
    model, _ = _model_and_config(adapter)
    model.encoder.load_state_dict(encoder_state, strict=True)
    with torch.no_grad():
        for param in model.decoder.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    state = {k: t.clone() for k, t in model.state_dict().items()}
    for key, tensor in encoder_state.items():
        if f"target_encoder.{key}" in state:
            state[f"target_encoder.{key}"] = tensor.clone()
    return state


def release_config(adapter: OlmoEarth) -> dict:
    """``config.json``: the model config and the decode-only modalities the package's loader reads."""
    _, config = _model_and_config(adapter)
    model = config.as_config_dict()
    supported = model["encoder_config"]["supported_modality_names"]
    decode_only = [m for m in supported if m not in ENCODER_INPUTS]
    return {"model": model, "train_module": {"masking_config": {"strategy_config": {"only_decode_modalities": decode_only}}}}


def write_config(adapter: OlmoEarth, weights_path) -> Path:
    """Write ``config.json`` beside ``weights_path``; returns its path."""
    path = Path(weights_path).with_name("config.json")
    path.write_text(json.dumps(release_config(adapter), indent=1))
    return path
