"""``xrembed.testing``: official-layout checkpoints for every family load strictly through the public path,
and importing the module registers no test model (``register_test_models()`` does, idempotently)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import xrembed
from xrembed.models.anysat import AnySat
from xrembed.models.base import Variant
from xrembed.models.copernicus_fm import CopernicusFM
from xrembed.models.clay import Clay
from xrembed.models.croma import CROMA
from xrembed.models.olmoearth import OlmoEarth
from xrembed.models.panopticon import Panopticon
from xrembed.models.dofa_clip import DOFACLIP
from xrembed.models.galileo import Galileo
from xrembed.models.prithvi import Prithvi
from xrembed.models.registry import _REGISTRY, get_adapter, register_model
from xrembed.models.remoteclip import RemoteCLIP
from xrembed.models.satmae import SatMAE
from xrembed.models.scalemae import ScaleMAE
from xrembed.models.terrafm import TerraFM
from xrembed.models.terramind import TerraMind
from xrembed.models.weights import WeightsSource, load_module, read_state_dict, strip_wrapper_prefixes
from xrembed.testing import TinyDOFA, register_test_models, synthetic_raster, write_official_checkpoint


def _variant(*, patch=8, size=32, extra=()):
    return {"tiny": Variant(name="tiny", embed_dim=32, depth=1, num_heads=4, patch_size=patch, image_size=size, extra=extra)}


# One small configuration per registered family (the family's own class, so its writer and clean-up);
# module-level classes, because the engine imports an adapter by its qualified name.
class HelperDOFACLIP(DOFACLIP):
    model_id, aliases, default_variant = "helpers-dofa_clip", (), "tiny"
    variants = _variant(patch=14, size=28, extra=(("mlp_ratio", 3.7362),))


class HelperPrithvi(Prithvi):
    model_id, aliases, default_variant = "helpers-prithvi", (), "tiny"
    variants = _variant(patch=16, extra=(("coords", True), ("max_frames", 4)))


class HelperRemoteCLIP(RemoteCLIP):
    model_id, aliases, default_variant = "helpers-remoteclip", (), "tiny"
    variants = _variant(extra=(("output_dim", 16),))


class HelperSatMAE(SatMAE):
    model_id, aliases, default_variant = "helpers-satmae", (), "tiny"
    variants = _variant()


class HelperScaleMAE(ScaleMAE):
    model_id, aliases, default_variant = "helpers-scalemae", (), "tiny"
    variants = _variant()


class HelperTerraFM(TerraFM):
    model_id, aliases, default_variant = "helpers-terrafm", (), "tiny"
    variants = _variant(patch=16)


class HelperCROMA(CROMA):
    model_id, aliases, default_variant = "helpers-croma", (), "tiny"
    variants = {"tiny": Variant(name="tiny", embed_dim=32, depth=2, num_heads=16, patch_size=8, image_size=32)}


class HelperPanopticon(Panopticon):
    model_id, aliases, default_variant = "helpers-panopticon", (), "tiny"
    variants = _variant(patch=14, size=28, extra=(("attn_dim", 48),))


class HelperOlmoEarth(OlmoEarth):
    model_id, aliases, default_variant = "helpers-olmoearth", (), "nano"
    variants = {"nano": Variant(name="nano", embed_dim=128, depth=4, num_heads=8, patch_size=8, image_size=16,
                                extra=OlmoEarth.variants["nano"].extra)}


class HelperGalileo(Galileo):
    model_id, aliases, default_variant = "helpers-galileo", (), "tiny"
    variants = {"tiny": Variant(name="tiny", embed_dim=32, depth=1, num_heads=4, patch_size=8, image_size=32,
                                extra=Galileo.variants["nano"].extra)}


class HelperAnySat(AnySat):
    model_id, aliases, default_variant = "helpers-anysat", (), "tiny"
    variants = _variant(patch=2, size=8, extra=(("patch_size_m", 20),))


class HelperTerraMind(TerraMind):
    model_id, aliases, default_variant = "helpers-terramind", (), "tiny"
    variants = {"tiny": Variant(name="tiny", embed_dim=32, depth=1, num_heads=4, patch_size=16, image_size=32,
                                extra=TerraMind.variants["base"].extra)}


class HelperClay(Clay):
    model_id, aliases, default_variant = "helpers-clay", (), "tiny"
    variants = _variant(extra=(("dim_head", 8), ("mlp_ratio", 2.0)))


class HelperCopernicusFM(CopernicusFM):
    model_id, aliases, default_variant = "helpers-copernicus_fm", (), "tiny"
    variants = _variant()


TINY = {
    "dofa": TinyDOFA,
    "dofa_clip": HelperDOFACLIP,
    "prithvi": HelperPrithvi,
    "remoteclip": HelperRemoteCLIP,
    "satmae": HelperSatMAE,
    "scalemae": HelperScaleMAE,
    "terrafm": HelperTerraFM,
    "croma": HelperCROMA,
    "panopticon": HelperPanopticon,
    "olmoearth": HelperOlmoEarth,
    "clay": HelperClay,
    "terramind": HelperTerraMind,
    "galileo": HelperGalileo,
    "anysat": HelperAnySat,
    "copernicus_fm": HelperCopernicusFM,
}
SUFFIX = {"dofa_clip": ".safetensors"}


def test_every_registered_family_has_a_small_configuration():
    official = {m: _REGISTRY[m] for m in xrembed.list_models() if _REGISTRY[m].__module__.startswith("xrembed.models.")}
    assert set(official) == set(TINY)
    assert all(issubclass(TINY[m], family) for m, family in official.items())


@pytest.mark.parametrize("family", sorted(TINY))
def test_official_layout_loads_strictly_and_equals_what_was_written(family, tmp_path):
    adapter = TINY[family]()
    register_model(TINY[family])
    path = tmp_path / f"{family}{SUFFIX.get(family, '.pth')}"
    written = write_official_checkpoint(path, adapter.model_id, seed=1)

    raw = strip_wrapper_prefixes(read_state_dict(str(path)))
    cleaned = adapter.clean_state_dict(dict(raw))
    dropped = set(raw) - set(cleaned)
    # TerraFM-B.pth is the reference module's flat state dict, Galileo's encoder.pt the encoder's, AnySat.pth
    # the whole AnyModule's (in {'state_dict'}), and CROMA's
    # release holds exactly its five parts (Copernicus-FM's release is flat and holds no key we drop: its absent
    # fc_norm is added)
    # (read_state_dict flattens them); every other release holds keys we drop
    assert bool(dropped) == (family not in ("terrafm", "croma", "galileo", "anysat", "copernicus_fm")), (family, dropped)

    loaded = load_module(TINY[family](), WeightsSource(str(path), "test"))  # strict: raises on any mismatch
    state = loaded.state_dict()
    assert set(state) == set(written.state_dict())
    for key, tensor in cleaned.items():
        assert torch.equal(state[key], tensor.to(state[key].dtype)), f"{family}: {key}"
    for key, tensor in written.state_dict().items():
        assert torch.equal(state[key], tensor), f"{family}: {key}"

    # the public path: embed() on a synthetic raster with weights= the file
    bands = list(adapter.default_bands)
    times = 1 if family in ("prithvi", "olmoearth", "anysat") else None  # the date-encoding models need a date
    da = synthetic_raster((adapter.variant.image_size,) * 2, bands=bands, times=times, seed=2)
    emb = da.rsembed.embed(adapter.model_id, weights=str(path), output="pooled")
    assert emb.attrs["weights"].endswith(path.name) and np.isfinite(emb.values).all()


def test_writer_is_seeded(tmp_path):
    a = write_official_checkpoint(tmp_path / "a.pth", TinyDOFA(), seed=3).state_dict()
    b = write_official_checkpoint(tmp_path / "b.pth", TinyDOFA(), seed=3).state_dict()
    c = write_official_checkpoint(tmp_path / "c.pth", TinyDOFA(), seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_importing_xrembed_testing_registers_nothing():
    code = textwrap.dedent(
        """
        import xrembed, xrembed.testing
        assert "dofa-tiny" not in xrembed.list_models(), xrembed.list_models()
        assert xrembed.testing.register_test_models() == ["dofa-tiny"]
        assert xrembed.testing.register_test_models() == ["dofa-tiny"]  # idempotent
        assert xrembed.list_models().count("dofa-tiny") == 1
        print("OK")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "OK", done.stderr[-2000:]


def test_register_test_models_is_idempotent():
    assert register_test_models() == register_test_models() == ["dofa-tiny"]
    assert "dofa-tiny" in xrembed.list_models()
