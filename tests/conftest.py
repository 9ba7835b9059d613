"""Shared fixtures. Tests never reach the network (invariant 7): the Hub is switched to offline mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Offline before huggingface_hub is imported anywhere; tests that need the hub mock its boundary.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import xrembed  # noqa: E402,F401  (registers the accessor)
import xrembed.testing  # noqa: E402

# Importing xrembed.testing registers nothing; the suite uses dofa-tiny throughout.
xrembed.testing.register_test_models()

from shared_paths import S2_SCENE, SHARED_DATA  # noqa: E402,F401  (also importable by test modules)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("XREMBED_NETWORK_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="needs the network; set XREMBED_NETWORK_TESTS=1 to run")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def s2_scene() -> Path:
    if not S2_SCENE.is_dir():
        pytest.fail(f"the shared Sentinel-2 scene is missing at {S2_SCENE}; clone the repo beside ../shared")
    return S2_SCENE


@pytest.fixture
def tiny():
    """Keyword arguments for the tiny DOFA (patch 8, 32 px tiles, random weights)."""
    return {"weights": "random"}


@pytest.fixture(autouse=True)
def _fresh_runtimes():
    from xrembed import engine

    engine.clear_runtimes()
    yield
    engine.clear_runtimes()


@pytest.fixture
def zenodo_adapter():
    """A tiny DOFA-shaped family whose official checkpoint is a plain URL (as SatMAE's on Zenodo is)."""
    from xrembed.models.base import UrlCheckpoint, Variant
    from xrembed.models.dofa import DOFA

    class Zenodo(DOFA):
        model_id = "zenodo-test"
        variants = {"v": Variant(
            name="v", embed_dim=32, depth=2, num_heads=2, patch_size=8, image_size=32,
            checkpoint=UrlCheckpoint(url="https://zenodo.org/x/w.pth", filename="w.pth"),
        )}
        default_variant = "v"

    return Zenodo()
