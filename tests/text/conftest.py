"""Fixtures of the text-tower tests: the small vision-language models (registered for the module, then
removed), whole checkpoints with real text towers, a tiny SigLIP tokenizer trained offline, and the
open_clip reference (test-only, imported behind the torchvision shim)."""

from __future__ import annotations

import warnings

import pytest

from xrembed import errors
from xrembed.models import registry
from xrembed.text.encode import clear_text_models
from xrembed.text.testing import tiny_vision_language_models, write_siglip_tokenizer, write_vision_language_checkpoint

from text_oracles import DOFA_TINY, REMOTE_TINY


@pytest.fixture(scope="module")
def vl_models():
    models = tiny_vision_language_models()
    yield models
    for cls in models:
        registry._REGISTRY.pop(cls.model_id, None)


@pytest.fixture(autouse=True)
def _fresh_text_models():
    clear_text_models()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", errors.RandomWeightsWarning)
        yield
    clear_text_models()


@pytest.fixture(scope="session")
def siglip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("siglip_tokenizer")
    write_siglip_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def dofa_ckpt(vl_models, tmp_path_factory):
    path = tmp_path_factory.mktemp("dofa_clip") / "open_clip_model.safetensors"
    image, tower = write_vision_language_checkpoint(path, DOFA_TINY, seed=3)
    return path, image, tower


@pytest.fixture(scope="module")
def remote_ckpt(vl_models, tmp_path_factory):
    path = tmp_path_factory.mktemp("remoteclip") / "RemoteCLIP-tiny.pt"
    image, tower = write_vision_language_checkpoint(path, REMOTE_TINY, seed=4)
    return path, image, tower


@pytest.fixture(scope="session")
def open_clip():
    from oracles import import_torchvision_cpu_safe

    try:
        import_torchvision_cpu_safe()
        import open_clip
    except Exception as err:  # pragma: no cover - depends on the test environment
        pytest.skip(f"open_clip reference unavailable: {err}")
    return open_clip
