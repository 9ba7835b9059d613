"""Weights resolution: official files through huggingface_hub (mocked at its boundary), local paths,
random weights; offline use names the local-file override."""

from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import huggingface_hub.constants

from xrembed import errors
from xrembed.models.registry import get_adapter
from xrembed.models.weights import resolve_weights
from xrembed.testing import synthetic_raster, write_official_checkpoint


def test_offline_hub_error_names_the_local_file_override(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    da = synthetic_raster((32, 32)).chunk()
    with pytest.raises(errors.WeightsError) as info:
        da.rsembed.embed("dofa")
    message = str(info.value)
    assert "DOFA_ViT_base_e100.pth" in message and "earthflow/DOFA" in message
    assert "weights='/path/to/DOFA_ViT_base_e100.pth'" in message and "--weights" in message


def test_official_weights_come_from_the_hub_cache(tmp_path):
    # The Hub is mocked at its download boundary: it hands back a file in a snapshot folder.
    snapshot = tmp_path / "models--earthflow--DOFA" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    path = snapshot / "DOFA_ViT_base_e100.pth"
    write_official_checkpoint(path, "dofa", "base")
    with mock.patch("huggingface_hub.hf_hub_download", return_value=str(path)) as download:
        source = resolve_weights(get_adapter("dofa"), None)
    assert download.call_args.args[:2] == ("earthflow/DOFA", "DOFA_ViT_base_e100.pth")
    assert source.path == str(path)
    assert source.label == "hf://earthflow/DOFA/DOFA_ViT_base_e100.pth@0123abc"


def test_local_file_and_identity_in_attrs(tmp_path):
    path = tmp_path / "tiny.pth"
    write_official_checkpoint(path, "dofa-tiny")
    emb = synthetic_raster((32, 32)).rsembed.embed("dofa-tiny", weights=str(path))
    assert emb.attrs["weights"] == f"file://{Path(path).resolve()}"
    random = synthetic_raster((32, 32)).rsembed.embed("dofa-tiny", weights="random")
    assert not np.allclose(emb.values, random.values)


def test_random_weights_warn_and_are_seeded():
    da = synthetic_raster((32, 32))
    with pytest.warns(errors.RandomWeightsWarning, match="random weights"):
        a = da.rsembed.embed("dofa-tiny", weights="random").values
    from xrembed import engine

    engine.clear_runtimes()
    b = da.rsembed.embed("dofa-tiny", weights="random").values
    np.testing.assert_array_equal(a, b)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(errors.WeightsError, match="not a readable PyTorch checkpoint"):
        synthetic_raster((32, 32)).rsembed.embed("dofa-tiny", weights=str(path))


def test_mae_style_checkpoint_with_namespace_loads(tmp_path):
    import argparse

    import torch

    path = tmp_path / "plain.pth"
    write_official_checkpoint(path, "dofa-tiny")
    state = torch.load(path, weights_only=True)
    torch.save({"model": state, "args": argparse.Namespace(lr=1e-3), "epoch": 799}, tmp_path / "mae.pth")
    emb = synthetic_raster((32, 32)).rsembed.embed("dofa-tiny", weights=str(tmp_path / "mae.pth"))
    assert np.isfinite(emb.values).all()


def test_url_checkpoint_offline_error_and_cache(tmp_path, monkeypatch, zenodo_adapter):
    from xrembed.models.weights import cache_dir

    monkeypatch.setenv("XREMBED_CACHE", str(tmp_path))
    with pytest.raises(errors.WeightsError, match="weights='/path/to/w.pth'"):
        resolve_weights(zenodo_adapter, None)  # HF_HUB_OFFLINE=1 in tests: no download attempted
    assert not list(tmp_path.rglob("*.part"))
    write_official_checkpoint(cache_dir() / "w.pth", "dofa-tiny")  # a cached file is used as is
    assert resolve_weights(zenodo_adapter, None).path == str(cache_dir() / "w.pth")
