"""Zero-shot class maps and joint-space grids: ``classify`` (resize mode) matches each model's reference
recipe on identical random weights; tile-mode ``(label, y, x)`` maps and ``embed(space="joint")`` are lazy,
chunk-invariant, CRS-correct and NaN where the input has no valid pixel; ``query_vector`` for similarity."""

from functools import partial

import numpy as np
import pytest
import torch
import xarray as xr

import xrembed
from xrembed import errors
from xrembed.models.weights import WeightsSource, load_module, read_state_dict
from xrembed.testing import synthetic_raster
from xrembed.text import query_vector

from text_oracles import DOFA_TINY, REMOTE_TINY, sentencepiece_reference

LABELS = ["water", "sand dunes", "a town"]
TEMPLATE = "a satellite image of {}."
RGB = ["B04", "B03", "B02"]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_remoteclip_pooled_classify_matches_open_clip_recipe(vl_models, remote_ckpt, open_clip):
    """README recipe: softmax(exp(logit_scale) * normalize(encode_image) @ normalize(encode_text).T)."""
    path, _, _ = remote_ckpt
    adapter = vl_models[1]()
    v = adapter.variant
    reference = open_clip.CLIP(
        embed_dim=16,
        vision_cfg={"image_size": 32, "layers": v.depth, "width": v.embed_dim, "patch_size": 8, "head_width": 8},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
    ).eval()
    reference.load_state_dict(torch.load(path, weights_only=True), strict=True)
    da = synthetic_raster((32, 32), bands=RGB, seed=5)  # exactly one model-size image: no resampling
    from open_clip.tokenizer import SimpleTokenizer
    from xrembed.models.remoteclip import CLIP_MEAN, CLIP_STD

    eight_bit = (np.clip(da.values / 10000.0, 0, 1) * 255).astype(np.uint8).astype(np.float32) / 255.0
    x = (torch.from_numpy(eight_bit) - torch.tensor(CLIP_MEAN).view(-1, 1, 1)) / torch.tensor(CLIP_STD).view(-1, 1, 1)
    with torch.no_grad():
        img = reference.encode_image(x[None], normalize=True)
        txt = reference.encode_text(SimpleTokenizer()([TEMPLATE.replace("{}", label) for label in LABELS]), normalize=True)
        expected = (reference.logit_scale.exp() * img @ txt.T).softmax(dim=-1)[0].numpy()
    p = da.rsembed.classify(LABELS, model=REMOTE_TINY, template=TEMPLATE, output="pooled", weights=path)
    assert p.dims == ("label",) and list(p["label"].values) == LABELS
    assert np.abs(p.values - expected).max() <= 1e-4
    assert p.values.sum() == pytest.approx(1.0, abs=1e-5)


def test_dofa_clip_pooled_classify_matches_readme_recipe(vl_models, dofa_ckpt, siglip_dir, open_clip):
    """README recipe: sigmoid(normalize(trunk(img, wvs)[0]) @ normalize(txt).T * exp(logit_scale) + logit_bias),
    the image through the trunk (parity-tested against the fork in tests/models/test_dofa_clip.py), the text through
    open_clip's TextTransformer on the file's text.* keys, the scalars read from the file."""
    from open_clip.transformer import LayerNorm, TextTransformer

    path, _, _ = dofa_ckpt
    adapter = vl_models[0]()
    state = read_state_dict(str(path))
    trunk = load_module(adapter, WeightsSource(str(path), "t"))
    text = TextTransformer(
        context_length=64, vocab_size=32000, width=32, heads=4, layers=2, mlp_ratio=3.7362, output_dim=32,
        no_causal_mask=True, pool_type="last", proj_bias=True, norm_layer=partial(LayerNorm, eps=1e-6),
    ).eval()
    text.load_state_dict({k[5:]: t for k, t in state.items() if k.startswith("text.")}, strict=True)
    da = synthetic_raster((44, 44), bands=RGB, seed=6)
    x = (torch.from_numpy(np.clip(da.values / 10000.0, 0, 1)) - 0.5) / 0.5
    ids = torch.from_numpy(sentencepiece_reference(siglip_dir, [TEMPLATE.replace("{}", lb) for lb in LABELS], open_clip))
    with torch.no_grad():
        img = _unit(trunk(x[None].float(), (0.665, 0.56, 0.49)).numpy())
        txt = _unit(text(ids).numpy())
    expected = _sigmoid(img @ txt.T * np.exp(float(state["logit_scale"])) + float(state["logit_bias"]))[0]
    p = da.rsembed.classify(LABELS, model=DOFA_TINY, template=TEMPLATE, output="pooled", weights=path, tokenizer=siglip_dir)
    assert np.abs(p.values - expected).max() <= 1e-4
    assert p.attrs["scoring"] == "sigmoid" and p.attrs["labels"] == LABELS


def _raster_with_hole(chunks):
    da = synthetic_raster((70, 90), bands=RGB, seed=7).copy()
    da[:, :20, :28] = np.nan  # the top-left cells have no valid pixel
    return da.chunk(chunks) if chunks else da


@pytest.mark.parametrize("model", [DOFA_TINY, REMOTE_TINY])
def test_tile_mode_maps_are_lazy_chunk_invariant_crs_correct_and_nan(model, vl_models, dofa_ckpt, remote_ckpt, siglip_dir):
    path = (dofa_ckpt if model == DOFA_TINY else remote_ckpt)[0]
    kwargs = dict(model=model, template=[TEMPLATE, "an aerial photo of {}"], weights=path,
                  tokenizer=siglip_dir if model == DOFA_TINY else None)
    lazy = _raster_with_hole({"y": 35, "x": 45}).rsembed.classify(LABELS, **kwargs)
    assert lazy.chunks is not None  # nothing computed yet
    other = _raster_with_hole({"y": 64, "x": 30}).rsembed.classify(LABELS, **kwargs)
    eager = _raster_with_hole(None).rsembed.classify(LABELS, **kwargs)
    grid = _raster_with_hole(None).rsembed.embed(model, weights=path)
    assert lazy.dims == ("label", "y", "x") and list(lazy["label"].values) == LABELS
    assert lazy.rio.crs == grid.rio.crs and lazy.rio.transform() == grid.rio.transform()
    np.testing.assert_array_equal(lazy["x"].values, grid["x"].values)
    values = lazy.values
    np.testing.assert_allclose(values, other.values, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(values, eager.values, atol=1e-5, equal_nan=True)
    assert np.isnan(values[:, 0, 0]).all() and np.isfinite(values[:, -1, -1]).all()
    assert np.isnan(values).any(axis=0).sum() == np.isnan(grid.values).any(axis=0).sum()
    finite = np.isfinite(values).all(axis=0)
    if model == REMOTE_TINY:  # softmax over labels
        np.testing.assert_allclose(values.sum(axis=0)[finite], 1.0, atol=1e-5)
    else:  # independent sigmoid probabilities: they need not sum to 1
        assert ((values[:, finite] > 0) & (values[:, finite] < 1)).all()
        assert not np.allclose(values.sum(axis=0)[finite], 1.0, atol=1e-2)
    classes = lazy.fillna(-1).argmax("label")
    assert classes.shape == grid.shape[1:]


def test_joint_space_is_the_image_head_per_cell(vl_models, dofa_ckpt, remote_ckpt):
    """RemoteCLIP: ln_post token @ proj; DOFA-CLIP: the attention pool on the one-token sequence."""
    da = synthetic_raster((48, 60), bands=RGB, seed=8).chunk({"y": 24, "x": 30})
    for model, ckpt, adapter in ((REMOTE_TINY, remote_ckpt, vl_models[1]()), (DOFA_TINY, dofa_ckpt, vl_models[0]())):
        path = ckpt[0]
        tokens = da.rsembed.embed(model, weights=path)
        joint = da.rsembed.embed(model, weights=path, space="joint")
        assert joint.chunks is not None and joint.attrs["space"] == "joint" and "space" not in tokens.attrs
        assert joint.rio.crs == tokens.rio.crs and joint.rio.transform() == tokens.rio.transform()
        cells = torch.from_numpy(tokens.values.reshape(tokens.sizes["embedding"], -1).T.copy())
        module = load_module(adapter, WeightsSource(str(path), "t"))
        with torch.no_grad():
            if model == REMOTE_TINY:
                proj = read_state_dict(str(path))["visual.proj"]
                expected = (cells @ proj).numpy()
            else:
                expected = module.attn_pool(cells[:, None, :]).numpy()
        got = joint.values.reshape(joint.sizes["embedding"], -1).T
        assert joint.sizes["embedding"] == expected.shape[1] == adapter.pooled_dim
        assert np.abs(got - expected).max() <= 1e-4
        rechunked = da.chunk({"y": 48, "x": 20}).rsembed.embed(model, weights=path, space="joint")
        np.testing.assert_allclose(rechunked.values, joint.values, atol=1e-5)


def test_query_vector_is_the_text_embedding_and_refuses_non_joint_grids(vl_models, remote_ckpt):
    path = remote_ckpt[0]
    da = synthetic_raster((40, 40), bands=RGB, seed=9).chunk({"y": 20, "x": 20})
    joint = da.rsembed.embed(REMOTE_TINY, weights=path, space="joint")
    q = query_vector(joint, "a harbour")
    expected = xrembed.encode_text(REMOTE_TINY, ["a harbour"], weights=path).values[0]
    assert q.shape == (16,) and np.abs(q - expected).max() <= 1e-6
    several = query_vector(joint, ["a harbour", "a port"], template="a satellite image of {}.")
    both = xrembed.encode_text(REMOTE_TINY, ["a harbour", "a port"], weights=path, template="a satellite image of {}.")
    np.testing.assert_allclose(several, _unit(both.values.mean(axis=0)), atol=1e-6)
    with pytest.raises(errors.OptionError, match="not in an image-text space.*space='joint'"):
        query_vector(da.rsembed.embed(REMOTE_TINY, weights=path), "a harbour")
    with pytest.raises(errors.OptionError, match="not in an image-text space"):
        query_vector(xr.DataArray(np.zeros((16, 2, 2)), dims=("embedding", "y", "x")), "a harbour")
    # a similarity map from it: cosine per cell, lazy
    unit = joint / np.sqrt((joint**2).sum("embedding"))
    sim = xr.dot(unit, xr.DataArray(q, dims="embedding"), dim="embedding")
    assert sim.chunks is not None and float(abs(sim).max()) <= 1.0 + 1e-6


def test_bad_classify_requests_are_refused_before_any_pixel(vl_models, remote_ckpt):
    path = remote_ckpt[0]
    da = synthetic_raster((40, 40), bands=RGB).chunk({"y": 20, "x": 20})
    with pytest.raises(errors.OptionError, match="has no text tower"):
        da.rsembed.classify(LABELS, model="dofa", weights="random")
    with pytest.raises(errors.OptionError, match="has no text tower"):
        da.rsembed.embed("dofa", space="joint", weights="random")
    with pytest.raises(errors.OptionError, match="space='nowhere' is not one of"):
        da.rsembed.embed(REMOTE_TINY, space="nowhere", weights=path)
    with pytest.raises(errors.OptionError, match="more than once"):
        da.rsembed.classify(["water", "water"], model=REMOTE_TINY, weights=path)
    with pytest.raises(errors.OptionError, match="empty"):
        da.rsembed.classify([], model=REMOTE_TINY, weights=path)
    with pytest.raises(errors.OptionError, match="strings"):
        da.rsembed.classify(["water", None], model=REMOTE_TINY, weights=path)
    with pytest.raises(errors.OptionError, match="sets space= itself"):
        da.rsembed.classify(LABELS, model=REMOTE_TINY, weights=path, space="joint")
    with pytest.raises(errors.OptionError, match="not a keyword"):
        da.rsembed.classify(LABELS, model=REMOTE_TINY, weights=path, bandz=RGB)


def test_text_is_embedded_once_per_call_not_per_chunk(vl_models, remote_ckpt, monkeypatch):
    from xrembed.text.tower import TextTower

    calls = []
    forward = TextTower.forward
    monkeypatch.setattr(TextTower, "forward", lambda self, ids: calls.append(ids.shape[0]) or forward(self, ids))
    da = synthetic_raster((96, 96), bands=RGB).chunk({"y": 32, "x": 32})  # 9 input chunks
    p = da.rsembed.classify(LABELS, model=REMOTE_TINY, weights=remote_ckpt[0], tiles_per_chunk=1)
    assert p.data.npartitions > 1
    p.compute()
    assert calls == [len(LABELS)]


def test_similarity_of_a_text_query_is_the_cosine_to_query_vector(vl_models, remote_ckpt):
    path = remote_ckpt[0]
    da = synthetic_raster((64, 64), bands=RGB, seed=10).chunk({"y": 32, "x": 32})
    joint = da.rsembed.embed(REMOTE_TINY, weights=path, space="joint")
    sim = joint.rsembed.similarity("a harbour")
    assert sim.dims == ("y", "x") and sim.chunks is not None
    q = query_vector(joint, "a harbour")
    cells = joint.values.reshape(joint.sizes["embedding"], -1).T
    expected = (_unit(cells) @ q).reshape(sim.shape)
    np.testing.assert_allclose(sim.values, expected, atol=1e-5)
    with pytest.raises(errors.OptionError, match="not in an image-text space"):
        da.rsembed.embed(REMOTE_TINY, weights=path).rsembed.similarity("a harbour")
