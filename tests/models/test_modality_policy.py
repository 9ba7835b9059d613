"""The named-modality policy of the base class (``modality_names``, ``modality_spellings``,
``default_modality``, ``sar_modality``), for every registered family that uses it."""

from __future__ import annotations

import pytest

from xrembed.errors import OptionError
from xrembed.models.band_sets import S1_BANDS
from xrembed.models.registry import _REGISTRY, get_adapter

NAMED = sorted(model for model, adapter in _REGISTRY.items() if adapter.modality_names)


def test_the_policy_is_used():
    assert {"croma", "olmoearth", "terrafm"} <= set(NAMED)


@pytest.mark.parametrize("model", NAMED)
def test_names_and_spellings_resolve_in_any_case(model):
    adapter = get_adapter(model)
    for name in adapter.modality_names:
        assert adapter.resolve_modality(name.upper(), None) == name
        assert adapter.resolve_modality(f" {name} ", None) == name
    for spelling, name in adapter.modality_spellings.items():
        assert name in adapter.modality_names, f"{model}: spelling {spelling!r} points at unknown {name!r}"
        assert adapter.resolve_modality(spelling.title(), None) == name


@pytest.mark.parametrize("model", NAMED)
def test_defaults_follow_the_bands(model):
    adapter = get_adapter(model)
    assert adapter.default_modality is None or adapter.default_modality in adapter.modality_names
    assert adapter.resolve_modality(None, ["B02", "B03", "B04"]) == adapter.default_modality
    expected = adapter.sar_modality or adapter.default_modality
    assert adapter.resolve_modality(None, list(S1_BANDS)) == expected


@pytest.mark.parametrize("model", NAMED)
def test_unknown_modality_is_refused_naming_the_choices(model):
    adapter = get_adapter(model)
    with pytest.raises(OptionError) as info:
        adapter.resolve_modality("hyperspectral", None)
    message = str(info.value)
    assert model.split("-")[0] in message and "'hyperspectral'" in message  # test variants: "<family>-tiny"
    assert any(f"'{name}'" in message for name in adapter.modality_names), message
