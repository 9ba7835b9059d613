"""The family contract declared as data in the base class: default sensors, frozen value objects."""

from __future__ import annotations

import dataclasses

import pytest

from xrembed.models.registry import _FAMILIES, get_adapter
from xrembed.specs import SensorSpec

_S2_SR, _S2_TOA, _S1_DB, _S1_LINEAR = (
    "COPERNICUS/S2_SR_HARMONIZED", "COPERNICUS/S2_HARMONIZED", "COPERNICUS/S1_GRD", "COPERNICUS/S1_GRD_FLOAT",
)
_RGB = ("B4", "B3", "B2")
_S2_12 = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
#: The table sources/gee.py held before the families declared their sensors (keyed "model[:modality]").
GEE_TABLE = {
    "dofa": SensorSpec(_S2_SR, ("B4", "B3", "B2", "B5", "B6", "B7", "B8", "B11", "B12"), scale_m=10, modality="s2"),
    "dofa:s1": SensorSpec(_S1_DB, ("VV", "VH"), scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=False),
    "dofa_clip": SensorSpec(_S2_SR, _RGB, scale_m=10, modality="s2"),
    "remoteclip": SensorSpec(_S2_SR, _RGB, scale_m=10, modality="s2"),
    "satmae": SensorSpec(_S2_SR, _RGB, scale_m=10, modality="s2"),
    "scalemae": SensorSpec(_S2_SR, _RGB, scale_m=10, modality="s2"),
    "prithvi": SensorSpec(_S2_SR, ("B2", "B3", "B4", "B8A", "B11", "B12"), scale_m=30, modality="s2"),
    "terrafm": SensorSpec(_S2_SR, _S2_12, scale_m=10, modality="s2"),
    "terrafm:s2_l1c": SensorSpec(_S2_TOA, _S2_12, scale_m=10, modality="s2_l1c"),
    "terrafm:s1": SensorSpec(_S1_LINEAR, ("VV", "VH"), scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=True),
    "croma": SensorSpec(_S2_SR, _S2_12, scale_m=10, modality="s2"),
    "croma:s1": SensorSpec(_S1_DB, ("VV", "VH"), scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=False),
    "panopticon": SensorSpec(_S2_SR, _S2_12, scale_m=10, modality="s2"),
    "panopticon:s1": SensorSpec(_S1_DB, ("VV", "VH"), scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=False),
    "olmoearth": SensorSpec(_S2_SR, _S2_12, scale_m=10, modality="s2"),
    "olmoearth:s1": SensorSpec(_S1_DB, ("VV", "VH"), scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=False),
    "clay": SensorSpec(_S2_SR, ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"), scale_m=10, modality="s2"),
    "clay:s1": SensorSpec(_S1_DB, ("VV", "VH"), scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=False),
    "terramind": SensorSpec(_S2_SR, _S2_12, scale_m=10, modality="s2"),
    "terramind:s1grd": SensorSpec(_S1_DB, ("VV", "VH"), scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=False),
    "terramind:s1rtc": SensorSpec(_S1_DB, ("VV", "VH"), scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=False),
    "galileo": SensorSpec(_S2_TOA, ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"), scale_m=10, modality="s2"),
    "galileo:s1": SensorSpec(_S1_DB, ("VV", "VH"), scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=False),
    "anysat": SensorSpec(_S2_SR, ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"), scale_m=10, modality="s2"),
    "copernicus_fm": SensorSpec(_S2_TOA, ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"), scale_m=10, modality="s2"),
    "copernicus_fm:s1": SensorSpec(_S1_DB, ("VV", "VH"), scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=False),
}


def test_each_family_declares_the_sensors_the_gee_table_had():
    declared = {}
    for family in _FAMILIES:
        for modality, sensor in family.sensors.items():
            key = family.model_id if sensor is next(iter(family.sensors.values())) else f"{family.model_id}:{modality}"
            declared[key] = sensor
    assert declared == GEE_TABLE


def test_default_sensor_resolves_aliases_and_inherits():
    terrafm = get_adapter("terrafm")
    assert terrafm.default_sensor().collection == "COPERNICUS/S2_SR_HARMONIZED"
    assert terrafm.default_sensor("sar").collection == "COPERNICUS/S1_GRD_FLOAT"
    assert terrafm.default_sensor("L1C").collection == "COPERNICUS/S2_HARMONIZED"
    assert get_adapter("dofa").default_sensor("s1").use_float_linear is False  # DOFA reads dB
    assert get_adapter("dofa-tiny").default_sensor("s1") == get_adapter("dofa").default_sensor("s1")
    assert get_adapter("prithvi").default_sensor().scale_m == 30
    assert get_adapter("remoteclip").default_sensor("s1") is None


@pytest.mark.parametrize("cls", ["Variant", "Checkpoint", "UrlCheckpoint", "InputContext", "InputPlan"])
def test_value_objects_are_frozen_and_keyword_only(cls):
    from xrembed.models import base

    value_type = getattr(base, cls)
    params = dataclasses.fields(value_type)
    assert value_type.__dataclass_params__.frozen
    assert all(f.kw_only for f in params), cls
    with pytest.raises(TypeError):
        value_type(*(["x"] * len(params)))


def test_a_variant_reads_by_name():
    variant = get_adapter("dofa").variant
    assert (variant.name, variant.embed_dim, variant.depth, variant.num_heads) == ("base", 768, 12, 12)
    with pytest.raises(dataclasses.FrozenInstanceError):
        variant.embed_dim = 1


@pytest.mark.parametrize("cls", _FAMILIES, ids=lambda c: c.model_id)
def test_plan_inputs_is_written_once_in_the_base(cls):
    """Families give data and hooks; the header of plan_inputs (modality, wavelengths=, bands) is the base's."""
    from xrembed.models.base import ModelAdapter

    assert cls.plan_inputs is ModelAdapter.plan_inputs


def test_wavelengths_refusal_keeps_each_familys_error_class():
    from xrembed.errors import OptionError, WavelengthError

    rgb = ["B04", "B03", "B02"]
    with pytest.raises(WavelengthError, match="takes no wavelengths="):
        get_adapter("prithvi").plan_inputs(rgb, wavelengths=[0.6, 0.5, 0.4])
    for model in ("satmae", "scalemae", "remoteclip", "terrafm"):
        with pytest.raises(OptionError, match="wavelengths="):
            get_adapter(model).plan_inputs(rgb, wavelengths=[0.6, 0.5, 0.4])
    plan = get_adapter("dofa").plan_inputs(rgb, wavelengths=[0.6, 0.5, 0.4])
    assert plan.option("wavelengths") == (0.6, 0.5, 0.4)


@pytest.mark.parametrize(("model", "modality"), [("terrafm", "s1"), ("croma", "s1"), ("olmoearth", "s1")])
def test_reorder_only_families_take_bands_in_any_order_but_no_other_set(model, modality):
    from xrembed.errors import BandMismatchError
    from xrembed.models.base import BandRequest

    adapter = get_adapter(model)
    assert adapter.bands_reorder_only
    wanted = list(adapter.bands_for(modality))

    def request(bands, available):
        return BandRequest(bands=bands, available=available, given_bands=bands, given_available=available,
                           modality=modality, wavelengths=None, context=None)

    available = ["B02", *reversed(wanted)]
    assert adapter.choose_bands(request(list(reversed(wanted)), available)) == wanted  # fed in model order
    with pytest.raises(BandMismatchError, match=rf"{model} with modality='{modality}' reads exactly {len(wanted)} bands"):
        adapter.choose_bands(request(wanted[:1], available))
    with pytest.raises(BandMismatchError, match="Pass bands="):
        adapter.choose_bands(request([*wanted, "B02"], available))
    with pytest.raises(BandMismatchError, match="not named"):
        adapter.choose_bands(request(None, None))


@pytest.mark.parametrize("model", ["dofa", "panopticon"])
def test_sar_bands_alone_are_read_as_sentinel1(model):
    adapter = get_adapter(model)
    assert adapter.sar_input_means_s1
    plan = adapter.plan_inputs(["VV", "VH"])  # no modality=: the optical defaults would be missing
    assert tuple(plan.bands) == ("VV", "VH")
