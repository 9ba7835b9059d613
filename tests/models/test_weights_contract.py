"""Weights that would give a silently wrong result are refused: non-finite tensors at load time; and without
network the official-weights path says so at once, without the download library's retries."""

import socket
from unittest import mock

import numpy as np
import pytest

import huggingface_hub
import huggingface_hub.constants
from huggingface_hub.errors import LocalEntryNotFoundError

from xrembed import errors
from xrembed.models.registry import get_adapter
from xrembed.models.weights import resolve_weights
from xrembed.testing import synthetic_raster, write_official_checkpoint


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_tensors_are_refused_at_load_time(tmp_path, bad):
    import torch

    path = tmp_path / "tiny.pth"
    write_official_checkpoint(path, "dofa-tiny")
    state = torch.load(path, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 2)
    state[key][0, 0] = bad
    torch.save(state, path)
    with pytest.raises(errors.WeightsError, match="non-finite") as info:
        synthetic_raster((32, 32)).rsembed.embed("dofa-tiny", weights=str(path)).values
    assert str(path) in str(info.value) and key in str(info.value)


def test_finite_checkpoint_still_loads(tmp_path):
    path = tmp_path / "tiny.pth"
    write_official_checkpoint(path, "dofa-tiny")
    values = synthetic_raster((32, 32)).rsembed.embed("dofa-tiny", weights=str(path)).values
    assert np.isfinite(values).all()


# --- no network ---------------------------------------------------------------------------------------------


@pytest.fixture
def online_mode(tmp_path, monkeypatch):
    """The hub's offline switch off (tests run with it on), an empty cache; the network boundary is mocked."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("XREMBED_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("XREMBED_CACHE", str(tmp_path / "cache"))
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def _no_dns(*args, **kwargs):
    raise socket.gaierror(-2, "Name or service not known")


def test_no_network_is_reported_at_once_without_hub_retries(online_mode):
    def hub(*args, local_files_only=False, **kwargs):
        if local_files_only:
            raise LocalEntryNotFoundError("not in the cache")
        raise AssertionError("the hub download (with its retries) must not run without network")

    with (
        mock.patch("huggingface_hub.hf_hub_download", side_effect=hub) as download,
        mock.patch("socket.create_connection", side_effect=_no_dns) as connect,
        pytest.raises(errors.WeightsError) as info,
    ):
        resolve_weights(get_adapter("dofa"), None)
    message = str(info.value)
    assert "no network" in message and "huggingface.co" in message
    assert "weights='/path/to/DOFA_ViT_base_e100.pth'" in message
    assert connect.call_count == 1  # one probe, no retries
    assert [c.kwargs.get("local_files_only") for c in download.call_args_list] == [True]  # the cache only


def test_offline_switch_skips_the_network_entirely(online_mode, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with (
        mock.patch("huggingface_hub.hf_hub_download", side_effect=LocalEntryNotFoundError("offline")) as download,
        mock.patch("socket.create_connection", side_effect=AssertionError("no probe when offline")),
        pytest.raises(errors.WeightsError, match="HF_HUB_OFFLINE.*weights='/path/to/DOFA_ViT_base_e100.pth'"),
    ):
        resolve_weights(get_adapter("dofa"), None)
    assert download.call_count == 1


def test_url_checkpoints_take_the_same_quick_offline_path(online_mode, zenodo_adapter):
    with (
        mock.patch("urllib.request.urlopen", side_effect=AssertionError("no download without network")),
        mock.patch("socket.create_connection", side_effect=_no_dns) as connect,
        pytest.raises(errors.WeightsError, match="no network.*zenodo.org.*weights='/path/to/w.pth'"),
    ):
        resolve_weights(zenodo_adapter, None)
    assert connect.call_count == 1


def test_a_reachable_host_goes_on_to_the_download(online_mode, tmp_path):
    snapshot = tmp_path / "models--earthflow--DOFA" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    path = snapshot / "DOFA_ViT_base_e100.pth"
    path.write_bytes(b"")

    def hub(*args, local_files_only=False, **kwargs):
        if local_files_only:
            raise LocalEntryNotFoundError("not in the cache")
        return str(path)

    with (
        mock.patch("huggingface_hub.hf_hub_download", side_effect=hub) as download,
        mock.patch("socket.create_connection", return_value=mock.MagicMock()) as connect,
    ):
        source = resolve_weights(get_adapter("dofa"), None)
    assert source.path == str(path) and download.call_count == 2 and connect.call_count == 1
