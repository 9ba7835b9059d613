"""The Literal option types and the run-time checks agree; the package ships its type marker."""

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
    hints = get_type_hints(xrembed.accessor.RSEmbedAccessor.embed)
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
