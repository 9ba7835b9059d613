"""The family contract declared as data in the base class: default sensors, frozen value objects."""

from __future__ import annotations

import dataclasses

import pytest

from xrembed.models.registry import _FAMILIES, get_adapter
from xrembed.sources.gee import DEFAULT_SENSORS


def test_each_family_declares_the_sensors_the_gee_table_had():
    declared = {}
    for family in _FAMILIES:
        for modality, sensor in family.sensors.items():
            key = family.model_id if sensor is next(iter(family.sensors.values())) else f"{family.model_id}:{modality}"
            declared[key] = sensor
    assert declared == DEFAULT_SENSORS


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
