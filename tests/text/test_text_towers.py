"""Text-tower fidelity (invariant 3): whole checkpoints load strictly (image tower, text tower and logit
scalars), ``encode_text`` matches open_clip 3.3.0 on identical random weights for both families, real-size
key sets and parameter counts are open_clip's, and text asked of image-only weights or models is refused."""

from functools import partial

import numpy as np
import pytest
import torch

import xrembed
from xrembed import errors
from xrembed.models.dofa_clip import DOFACLIP
from xrembed.models.remoteclip import RemoteCLIP
from xrembed.models.weights import WeightsSource, load_module, read_state_dict
from xrembed.text.encode import load_text_tower, text_config
from xrembed.text.testing import write_vision_language_checkpoint
from xrembed.text.tower import TextTower

from text_oracles import DOFA_TINY, REMOTE_TINY, sentencepiece_reference

TEXTS = ["a harbour", "Sand dunes, near the coast!", "", "water " * 90, "fish &amp; chips"]


def siglip_reference_tower(open_clip, cfg):
    """open_clip's TextTransformer with the DOFA-CLIP (SigLIP) text_cfg at ``cfg``'s size."""
    from open_clip.transformer import LayerNorm, TextTransformer

    return TextTransformer(
        context_length=cfg.context_length, vocab_size=cfg.vocab_size, width=cfg.width, heads=cfg.heads,
        layers=cfg.layers, mlp_ratio=cfg.mlp_hidden / cfg.width, output_dim=cfg.output_dim, no_causal_mask=True,
        pool_type="last", proj_bias=True, norm_layer=partial(LayerNorm, eps=1e-6),
    )


def test_dofa_clip_encode_text_matches_open_clip(vl_models, dofa_ckpt, siglip_dir, open_clip):
    path, _, _ = dofa_ckpt
    cfg = text_config(vl_models[0]())
    reference = siglip_reference_tower(open_clip, cfg).eval()
    state = read_state_dict(str(path))
    text_state = {k[len("text."):]: v for k, v in state.items() if k.startswith("text.")}
    reference.load_state_dict(text_state, strict=True)  # the file's text.* are open_clip's own keys
    ids = torch.from_numpy(sentencepiece_reference(siglip_dir, TEXTS, open_clip))
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference(ids), dim=-1).numpy()
    txt = xrembed.encode_text(DOFA_TINY, TEXTS, weights=path, tokenizer=siglip_dir)
    assert txt.dims == ("text", "embedding") and list(txt["text"].values) == TEXTS
    assert np.abs(txt.values - expected).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(txt.values, axis=1), 1.0, atol=1e-5)
    assert txt.attrs["logit_scale"] == pytest.approx(float(state["logit_scale"]))
    assert txt.attrs["logit_bias"] == pytest.approx(float(state["logit_bias"]))
    assert txt.attrs["scoring"] == "sigmoid"


def test_remoteclip_whole_checkpoint_is_open_clips_and_encode_text_matches(vl_models, remote_ckpt, open_clip):
    path, _, _ = remote_ckpt
    adapter = vl_models[1]()
    v, cfg = adapter.variant, text_config(adapter)
    reference = open_clip.CLIP(
        embed_dim=cfg.output_dim,
        vision_cfg={"image_size": v.image_size, "layers": v.depth, "width": v.embed_dim, "patch_size": v.patch_size,
                    "head_width": v.embed_dim // v.num_heads},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": cfg.width, "heads": cfg.heads, "layers": cfg.layers},
    ).eval()
    # open_clip's own strict load accepts the whole file: image tower, text tower and logit_scale
    reference.load_state_dict(torch.load(path, weights_only=True), strict=True)
    from open_clip.tokenizer import SimpleTokenizer

    with torch.no_grad():
        expected = reference.encode_text(SimpleTokenizer()(TEXTS), normalize=True).numpy()
    txt = xrembed.encode_text(REMOTE_TINY, TEXTS, weights=path)
    assert np.abs(txt.values - expected).max() <= 1e-4
    assert txt.attrs["logit_scale"] == pytest.approx(float(reference.logit_scale.detach()))
    assert "logit_bias" not in txt.attrs and txt.attrs["scoring"] == "softmax"


def test_templates_are_averaged_as_clip_does(vl_models, remote_ckpt):
    path, _, _ = remote_ckpt
    templates = ["a satellite image of {}.", "an aerial photo of {}"]
    both = xrembed.encode_text(REMOTE_TINY, ["a town"], weights=path, template=templates).values[0]
    singles = [xrembed.encode_text(REMOTE_TINY, [t.replace("{}", "a town")], weights=path).values[0] for t in templates]
    mean = np.mean(singles, axis=0)
    np.testing.assert_allclose(both, mean / np.linalg.norm(mean), atol=1e-6)
    assert not np.allclose(both, singles[0], atol=1e-3)


@pytest.mark.parametrize("family", ["dofa_clip", "remoteclip"])
def test_whole_checkpoint_every_key_is_loaded_or_documented(family, vl_models, dofa_ckpt, remote_ckpt):
    """Image and text loads together cover the whole file strictly; only translators.* are dropped."""
    adapter = vl_models[0]() if family == "dofa_clip" else vl_models[1]()
    path = (dofa_ckpt if family == "dofa_clip" else remote_ckpt)[0]
    state = read_state_dict(str(path))
    image_keys = set(load_module(adapter, WeightsSource(str(path), "t")).state_dict())
    text_keys = set(load_text_tower(adapter, text_config(adapter), WeightsSource(str(path), "t")).state_dict())
    prefix, image_prefix = ("text.", "visual.trunk.") if family == "dofa_clip" else ("", "visual.")
    in_file = {image_prefix + k for k in image_keys} | {k if k.startswith("logit_") else prefix + k for k in text_keys}
    dropped = set(state) - in_file
    assert all(k.startswith("translators.") for k in dropped) and (bool(dropped) == (family == "dofa_clip"))
    assert {"logit_scale"} <= text_keys and (("logit_bias" in text_keys) == (family == "dofa_clip"))


def test_text_keys_are_loaded_strictly(vl_models, remote_ckpt, dofa_ckpt, tmp_path, siglip_dir):
    path, _, _ = remote_ckpt
    state = torch.load(path, weights_only=True)
    missing = {k: v for k, v in state.items() if k != "ln_final.bias"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(errors.WeightsError, match=r"text tower .* 1 missing keys \(ln_final.bias\)"):
        xrembed.encode_text(REMOTE_TINY, "a", weights=tmp_path / "missing.pt")
    torch.save(dict(state, **{"text_extra.weight": torch.zeros(2)}), tmp_path / "extra.pt")
    with pytest.raises(errors.WeightsError, match="unexpected keys"):
        xrembed.encode_text(REMOTE_TINY, "a", weights=tmp_path / "extra.pt")
    # the other family's variant: wrong shapes, and the message lists the variants
    with pytest.raises(errors.WeightsError, match="variant"):
        xrembed.encode_text("remoteclip", "a", weights=path)
    # the logit scalars are part of the strict load
    from safetensors.torch import load_file, save_file

    dofa = load_file(str(dofa_ckpt[0]))
    save_file({k: v for k, v in dofa.items() if k != "logit_bias"}, str(tmp_path / "no_bias.safetensors"))
    with pytest.raises(errors.WeightsError, match="logit_bias"):
        xrembed.encode_text(DOFA_TINY, "a", weights=tmp_path / "no_bias.safetensors", tokenizer=siglip_dir)


@pytest.mark.parametrize("model", [DOFA_TINY, REMOTE_TINY])
def test_image_only_weights_refuse_text_clearly(model, vl_models, tmp_path, siglip_dir):
    path = tmp_path / ("image.safetensors" if model == DOFA_TINY else "image.pt")
    image, tower = write_vision_language_checkpoint(path, model, text=False)
    assert tower is None
    load_module(vl_models[0]() if model == DOFA_TINY else vl_models[1](), WeightsSource(str(path), "t"))  # images fine
    with pytest.raises(errors.WeightsError, match="holds no text tower.*image-only"):
        xrembed.encode_text(model, ["a"], weights=path, tokenizer=siglip_dir if model == DOFA_TINY else None)


def test_bad_text_input_and_image_only_models_are_refused(vl_models, remote_ckpt):
    path = remote_ckpt[0]
    with pytest.raises(errors.OptionError, match="has no text tower.*dofa_clip"):
        xrembed.encode_text("dofa", ["water"], weights="random")
    with pytest.raises(errors.OptionError, match="empty"):
        xrembed.encode_text(REMOTE_TINY, [], weights=path)
    with pytest.raises(errors.OptionError, match="strings"):
        xrembed.encode_text(REMOTE_TINY, ["water", 3], weights=path)
    with pytest.raises(errors.OptionError, match=r"exactly one '\{\}'"):
        xrembed.encode_text(REMOTE_TINY, ["water"], weights=path, template="a satellite image")
    with pytest.raises(errors.WeightsError, match="does not exist"):
        xrembed.encode_text(REMOTE_TINY, ["water"], weights=path.parent / "absent.pt")


def test_describe_model_says_which_models_have_text():
    assert xrembed.describe_model("dofa")["text"] is None
    dofa_clip = xrembed.describe_model("dofa_clip")["text"]
    assert dofa_clip["context_length"] == 64 and dofa_clip["vocab_size"] == 32000 and "sigmoid" in dofa_clip["scoring"]
    assert xrembed.describe_model("remoteclip", variant="vit_l14")["text"]["embed_dim"] == 768
    assert "softmax" in xrembed.describe_model("remoteclip")["text"]["scoring"]


# -- real sizes, on the meta device (no forward) ----------------------------------------------------

#: Text-tower parameter counts measured on open_clip (reference/text-towers.md), without the logit scalars.
REAL_COUNTS = {("dofa_clip", "so400m"): 449_734_896, ("dofa_clip", "b16"): 110_271_744,
               ("remoteclip", "vit_b32"): 63_428_096, ("remoteclip", "vit_l14"): 123_650_304}


@pytest.mark.parametrize("model,variant", list(REAL_COUNTS))
def test_real_size_text_towers_have_open_clips_keys_and_parameter_counts(model, variant, open_clip):
    adapter = (DOFACLIP if model == "dofa_clip" else RemoteCLIP)(variant)
    cfg = text_config(adapter)
    with torch.device("meta"):
        ours = TextTower(cfg)
        if model == "dofa_clip":
            reference = siglip_reference_tower(open_clip, cfg)
        else:
            from open_clip.transformer import TextTransformer

            reference = TextTransformer(width=cfg.width, heads=cfg.heads, layers=cfg.layers, output_dim=cfg.output_dim)
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items() if not k.startswith("logit_")}
    ref_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items() if k != "attn_mask"}
    assert ours_shapes == ref_shapes
    count = sum(p.numel() for name, p in ours.named_parameters() if not name.startswith("logit_"))
    assert count == REAL_COUNTS[(model, variant)]
    assert {k for k in ours.state_dict() if k.startswith("logit_")} == (
        {"logit_scale", "logit_bias"} if model == "dofa_clip" else {"logit_scale"}
    )
