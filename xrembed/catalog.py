"""What xrembed can embed with, in one place: the models and the precomputed products, their contracts, and
the Earth Engine sensor each model reads by default.

This module sits above both :mod:`xrembed.models` and :mod:`xrembed.sources`, which know nothing of each
other: a model declares its sensors as data (``ModelAdapter.sensors``), a source takes a
:class:`~xrembed.specs.SensorSpec` and a tile size. Joining the two (``open_gee("dofa", ...)``) happens here.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .errors import OptionError
from .models.base import ModelAdapter
from .models.registry import get_adapter, list_models
from .sources import gee as gee_source  # imports Earth Engine only when a collection is opened
from .sources.precomputed import describe_product, is_product, list_products
from .specs import SensorSpec

__all__ = ["default_sensor", "describe_model", "is_product", "list_models", "list_products", "open_gee"]

#: The SensorSpec fields ``describe_model`` shows per default sensor.
_SENSOR_FIELDS = ("collection", "bands", "scale_m", "cloudy_pct", "composite", "use_float_linear")


def describe_model(model: str, *, variant: str | None = None) -> dict[str, Any]:
    """The input contract of a model: bands and order, wavelengths, sizes, normalisation, outputs, weights.

    A precomputed product (``"tessera"``, ``"gse"``, ...) is described too. No weights are loaded and torch
    is not imported.

    Examples
    --------
    >>> import xrembed
    >>> info = xrembed.describe_model("dofa")
    >>> info["patch_size"], info["embed_dim"], info["bands"][:3]
    (16, 768, ['B04', 'B03', 'B02'])
    >>> info["default_sensors"]["s1"]["collection"]
    'COPERNICUS/S1_GRD'
    """
    if is_product(model):
        return describe_product(model)
    adapter = get_adapter(model, variant)
    info = adapter.describe()
    info.setdefault("text", None)  # the text tower (encode_text, classify), or None for image-only models
    info["default_sensors"] = {
        modality: {k: v for k, v in asdict(sensor).items() if k in _SENSOR_FIELDS}
        for modality, sensor in type(adapter).sensors.items()
    }
    return info


def default_sensor(model: str, modality: str | None = None) -> SensorSpec:
    """The Earth Engine sensor ``model`` reads by default (for ``modality``, if the model has several).

    Aliases and registered sub-families (e.g. the test model ``dofa-tiny``) resolve to their family.

    Examples
    --------
    >>> default_sensor("terrafm", modality="s1").collection
    'COPERNICUS/S1_GRD_FLOAT'
    >>> default_sensor("dofa").bands[:3]
    ('B4', 'B3', 'B2')
    """
    family = type(get_adapter(model))
    if not family.sensors:
        raise OptionError(
            f"no default Earth Engine sensor is known for model {model!r}; pass a collection id and bands=[...] "
            "or a SensorSpec to open_gee instead."
        )
    sensor = family.default_sensor(modality)
    if sensor is None:
        raise OptionError(
            f"model {model!r} has no Earth Engine sensor for modality={modality!r}; use one of {sorted(family.sensors)}."
        )
    return sensor


def _model_tile_size(model: str) -> int:
    """The side of the model's input tiles, so Earth Engine requests hold whole tiles."""
    adapter: ModelAdapter = get_adapter(model)
    return adapter.variant.image_size


def open_gee(source: Any, *, modality: str | None = None, **kwargs: Any):
    """Open Earth Engine imagery as a lazy Dataset: :func:`xrembed.sources.gee.open_gee`, which also takes a
    model id (``"dofa"``; ``"terrafm"`` with ``modality="s1"``) and then reads that model's default sensor
    in requests sized to its tiles.

    Every other keyword is :func:`xrembed.sources.gee.open_gee`'s (see there for the full list).

    Examples
    --------
    >>> ds = open_gee("dofa", spatial=PointBuffer(-9.5, 25.0, 1120),            # doctest: +SKIP
    ...               temporal=TemporalSpec.range("2022-06-01", "2022-09-01"))
    >>> emb = ds.rsembed.embed("dofa")                                           # doctest: +SKIP
    """
    if isinstance(source, str) and "/" not in source:  # a model id, not a collection id
        return gee_source.open_gee(default_sensor(source, modality), tile_size=_model_tile_size(source), **kwargs)
    return gee_source.open_gee(source, modality=modality, **kwargs)
