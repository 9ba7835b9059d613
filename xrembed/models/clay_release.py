"""The Clay v1.5 release layout (a Lightning checkpoint), for writing test checkpoints.

``clay-v1.5.ckpt`` is what Lightning saves for Clay's ``ClayMAEModule``: a dict with ``state_dict`` (the
whole ``ClayMAE`` under ``model.``: ``model.encoder.*``, ``model.decoder.*``, ``model.teacher.*`` (the
frozen distillation teacher) and ``model.proj.*`` (encoder class token to teacher features)) beside
Lightning's bookkeeping (``epoch``, ``global_step``, ``pytorch-lightning_version``, ``hyper_parameters``,
...). :func:`release_checkpoint` builds that dict for a given encoder state, with the other parts as small
stand-ins under their real key names. Which extras the published file holds beyond these (optimizer
states, loops) was not checked against the real file [unverified]; xrembed's reader takes ``state_dict``.
"""

from __future__ import annotations

#: Decoder keys of Clay's ``Decoder`` (one block), with the shapes of a width-16 stand-in.
_DECODER = {
    "enc_to_dec.weight": (16, None), "enc_to_dec.bias": (16,), "mask_patch": (16,),
    "transformer.norm.weight": (16,), "transformer.norm.bias": (16,),
    "transformer.layers.0.0.norm.weight": (16,), "transformer.layers.0.0.norm.bias": (16,),
    "transformer.layers.0.0.to_qkv.weight": (48, 16), "transformer.layers.0.0.to_out.weight": (16, 16),
    "transformer.layers.0.1.net.0.weight": (16,), "transformer.layers.0.1.net.0.bias": (16,),
    "transformer.layers.0.1.net.1.weight": (32, 16), "transformer.layers.0.1.net.1.bias": (32,),
    "transformer.layers.0.1.net.3.weight": (16, 32), "transformer.layers.0.1.net.3.bias": (16,),
    "embed_to_pixels.weight_generator.weight_tokens": (128, 128),
    "embed_to_pixels.weight_generator.bias_token": (1, 128),
    "embed_to_pixels.weight_generator.fc_weight.weight": (1024, 128),
    "embed_to_pixels.weight_generator.fc_weight.bias": (1024,),
    "embed_to_pixels.fclayer.l1.weight": (128, 128), "embed_to_pixels.fclayer.l1.bias": (128,),
}
#: A few teacher keys (a timm ViT; stored frozen), stand-ins.
_TEACHER = {"cls_token": (1, 1, 16), "patch_embed.proj.weight": (16, 3, 14, 14), "norm.weight": (16,)}


def release_checkpoint(encoder_state: dict, embed_dim: int, torch) -> dict:
    """The Lightning checkpoint dict holding ``encoder_state`` as ``model.encoder.*`` plus stand-in parts."""
    state = {f"model.encoder.{k}": t.clone() for k, t in encoder_state.items()}
    generator = torch.Generator().manual_seed(0)
    for key, shape in _DECODER.items():
        shape = tuple(embed_dim if s is None else s for s in shape)
        state[f"model.decoder.{key}"] = torch.randn(shape, generator=generator) * 0.02
    for key, shape in _TEACHER.items():
        state[f"model.teacher.{key}"] = torch.zeros(shape)
    state["model.proj.weight"] = torch.randn(16, embed_dim, generator=generator) * 0.02
    state["model.proj.bias"] = torch.zeros(16)
    return {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state,
        "hyper_parameters": {"model_size": "large", "mask_ratio": 0.75, "patch_size": 8, "shuffle": True},
    }
