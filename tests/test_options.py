"""The Literal option types and the run-time checks agree; the keywords of ``embed()`` are declared once
(``EmbedOptions``) and every front takes exactly those; the package ships its type marker."""

import dataclasses
import inspect
from importlib import resources
from typing import get_args, get_type_hints

import pytest

import xrembed
from xrembed import options
from xrembed.errors import OptionError
from xrembed.testing import synthetic_raster


@pytest.mark.parametrize(("name", "alias"), [("output", options.Output), ("input_prep", options.InputPrep),
                                             ("precision", options.Precision)])
def test_the_accessor_is_typed_with_the_values_embed_accepts(name, alias):
    hints = get_type_hints(options.EmbedKwargs)
    assert hints[name] == alias
    raster = synthetic_raster((32, 32))
    for value in get_args(alias):
        if value == "fp16":
            continue  # CUDA only: refused on this machine for another reason
        raster.rsembed.embed("dofa-tiny", weights="random", **{name: value})
    with pytest.raises(OptionError, match=str(list(get_args(alias)))):
        raster.rsembed.embed("dofa-tiny", weights="random", **{name: "neither"})


def test_the_package_is_marked_typed():
    assert resources.files("xrembed").joinpath("py.typed").is_file()


def test_the_typed_keywords_are_exactly_the_options_fields():
    assert tuple(options.EmbedKwargs.__annotations__) == options.EmbedOptions.names()


def test_every_keyword_is_documented_once_in_the_accessor():
    doc = inspect.getdoc(xrembed.accessor.RSEmbedAccessor.embed)
    documented = doc.split("Parameters")[1].split("Returns")[0]
    entries = {line.strip() for line in documented.splitlines() if line and not line.startswith(" ")}
    names = {name.strip() for entry in entries for name in entry.split(",")}
    missing = set(options.EmbedOptions.names()) - names
    assert not missing, f"undocumented embed() keywords: {sorted(missing)}"


@pytest.mark.parametrize("front", [xrembed.embed, xrembed.accessor.RSEmbedAccessor.embed])
def test_the_fronts_take_the_options_as_one_keyword_set(front):
    params = inspect.signature(front).parameters
    assert [p.kind for p in params.values()][-1] is inspect.Parameter.VAR_KEYWORD
    assert "output" not in params  # the keyword list is not copied into the signature


def test_an_unknown_keyword_names_the_closest_one():
    raster = synthetic_raster((32, 32))
    with pytest.raises(OptionError, match="Did you mean batch_size="):
        raster.rsembed.embed("dofa-tiny", weights="random", batchsize=2)
    with pytest.raises(OptionError, match="Did you mean precision="):
        xrembed.embed(raster, "dofa-tiny", weights="random", precison="bf16")


def test_options_are_a_frozen_value_object():
    opts = options.EmbedOptions(batch_size=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.batch_size = 3  # type: ignore[misc]
    assert opts.replace(batch_size=3).batch_size == 3 and opts.batch_size == 2
    with pytest.raises(OptionError, match="Did you mean"):
        opts.replace(bandz=["B02"])
    with pytest.raises(TypeError):
        options.EmbedOptions("grid")  # keyword-only


@pytest.mark.parametrize(("value", "ok"), [(3, True), (0, False), (-1, False), (True, False), (2.0, False)])
def test_positive_int(value, ok):
    if ok:
        assert options.positive_int("n", value) == value
    else:
        with pytest.raises(OptionError, match="n must be a positive integer"):
            options.positive_int("n", value)
    assert options.positive_int("n", None, allow_none=True) is None
