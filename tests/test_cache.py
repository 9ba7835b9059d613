"""xrembed.cache: the cache folders, the one offline switch, atomic writes, and checked URL downloads (served
from a local HTTP server: the real urllib code runs, no internet is reached)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import huggingface_hub.constants
import pytest

from xrembed import cache, errors


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A folder served over HTTP on localhost; yields (folder, base URL)."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_cache_root_and_kinds_follow_xrembed_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XREMBED_CACHE", str(tmp_path))
    assert cache.cache_root() == tmp_path
    assert cache.cache_dir() == tmp_path / "weights"
    assert cache.cache_dir("gse") == tmp_path / "gse"


def test_cache_root_defaults_under_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XREMBED_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_root() == tmp_path / "xrembed"


@pytest.mark.parametrize("name", ["XREMBED_OFFLINE", "HF_HUB_OFFLINE"])
def test_either_offline_variable_switches_downloads_off(name, monkeypatch):
    monkeypatch.delenv("XREMBED_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert not cache.is_offline()
    monkeypatch.setenv(name, "1")
    assert cache.is_offline()
    assert "offline mode is on" in cache.offline_reason("https://zenodo.org/x/w.pth")


def test_atomic_path_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "sub" / "state.json"
    with cache.atomic_path(target) as tmp:
        tmp.write_text("old")
    with pytest.raises(RuntimeError), cache.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]  # no temporary left behind


def test_download_checks_the_sha256(served, tmp_path):
    folder, url = served
    (folder / "w.bin").write_bytes(b"weights" * 1000)
    good = hashlib.sha256(b"weights" * 1000).hexdigest()
    target = tmp_path / "cache" / "w.bin"
    assert cache.download_url(f"{url}/w.bin", target, sha256=good.upper()) == target
    assert cache.sha256_of(target) == good
    target.unlink()
    with pytest.raises(cache.ChecksumError, match="sha256"):
        cache.download_url(f"{url}/w.bin", target, sha256="0" * 64)
    assert not list(target.parent.iterdir())  # nothing half-trusted stays in the cache


def test_download_check_runs_before_the_file_is_kept(served, tmp_path):
    folder, url = served
    (folder / "w.pth").write_bytes(b"not a checkpoint")
    seen = []

    def refuse(path):
        seen.append(path.read_bytes())
        raise ValueError("unreadable")

    with pytest.raises(ValueError, match="unreadable"):
        cache.download_url(f"{url}/w.pth", tmp_path / "w.pth", check=refuse)
    assert seen == [b"not a checkpoint"] and not (tmp_path / "w.pth").exists()


def test_a_missing_url_is_an_oserror(served, tmp_path):
    _, url = served
    with pytest.raises(OSError):
        cache.download_url(f"{url}/absent.pth", tmp_path / "absent.pth")
    assert not (tmp_path / "absent.pth").exists()


def test_url_checkpoint_download_refuses_a_corrupt_file(served, tmp_path, monkeypatch):
    """The official-weights path: a URL checkpoint without a published sha256 must at least be readable."""
    import dataclasses

    from xrembed.models.base import UrlCheckpoint
    from xrembed.models.dofa import DOFA
    from xrembed.models.weights import resolve_weights

    folder, url = served
    (folder / "w.pth").write_bytes(b"\x00" * 128)
    monkeypatch.setenv("XREMBED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "is_offline", lambda: False)  # tests run with HF_HUB_OFFLINE=1
    adapter = DOFA()
    adapter.variant = dataclasses.replace(adapter.variant, checkpoint=UrlCheckpoint(url=f"{url}/w.pth", filename="w.pth"))
    with pytest.raises(errors.WeightsError, match="not a readable PyTorch checkpoint"):
        resolve_weights(adapter, None)
    assert not (tmp_path / "cache" / "weights" / "w.pth").exists()
