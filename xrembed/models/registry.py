"""The model registry: ids, aliases and the adapter class of each family.

Adding a family means writing one module with a :class:`~xrembed.models.base.ModelAdapter` subclass and
listing it in ``_FAMILIES``. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnknownModelError
from .base import ModelAdapter
from .dofa import DOFA
from .dofa_clip import DOFACLIP
from .prithvi import Prithvi
from .remoteclip import RemoteCLIP
from .satmae import SatMAE
from .scalemae import ScaleMAE
from .terrafm import TerraFM

_FAMILIES: tuple[type[ModelAdapter], ...] = (DOFA, DOFACLIP, Prithvi, RemoteCLIP, SatMAE, ScaleMAE, TerraFM)

_REGISTRY: dict[str, type[ModelAdapter]] = {}
_ALIASES: dict[str, str] = {}


def register_model(adapter: type[ModelAdapter]) -> type[ModelAdapter]:
    """Register a model family (usable as a class decorator). Re-registering an id replaces it."""
    _REGISTRY[adapter.model_id] = adapter
    for alias in adapter.aliases:
        _ALIASES[alias] = adapter.model_id
    return adapter


for _family in _FAMILIES:
    register_model(_family)


def list_models(*, include_aliases: bool = False) -> list[str]:
    """Ids of the registered models (sorted).

    Examples
    --------
    >>> import xrembed
    >>> "dofa" in xrembed.list_models()
    True
    """
    names = sorted(_REGISTRY)
    if include_aliases:
        names = sorted(names + list(_ALIASES))
    return names


def resolve_model_id(model: str) -> str:
    key = str(model).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownModelError(f"unknown model {model!r}; available: {list_models(include_aliases=True)}.")
    return key


def get_adapter(model: str, variant: str | None = None) -> ModelAdapter:
    """An adapter instance for ``model`` (an id or alias) and ``variant`` (default: the family's default)."""
    return _REGISTRY[resolve_model_id(model)](variant)


def describe_model(model: str, *, variant: str | None = None) -> dict[str, Any]:
    """The input contract of a model: bands and order, wavelengths, sizes, normalisation, outputs, weights.

    No weights are loaded and torch is not imported.

    Examples
    --------
    >>> import xrembed
    >>> info = xrembed.describe_model("dofa")
    >>> info["patch_size"], info["embed_dim"], info["bands"][:3]
    (16, 768, ['B04', 'B03', 'B02'])
    """
    from ..sources.precomputed import describe_product, is_product

    if is_product(model):
        return describe_product(model)
    adapter = get_adapter(model, variant)
    info = adapter.describe()
    info["default_sensors"] = _default_sensors(adapter)
    return info


def _default_sensors(adapter: ModelAdapter) -> dict[str, dict[str, Any]]:
    """The Earth Engine sensor per modality this model reads by default (what ``open_gee(model_id)`` fetches).

    Sub-families (e.g. the tiny test DOFA) inherit their parent family's sensors.
    """
    from dataclasses import asdict

    from ..sources.gee import DEFAULT_SENSORS

    families = {key.partition(":")[0] for key in DEFAULT_SENSORS}
    model_id = next((getattr(cls, "model_id", None) for cls in type(adapter).__mro__
                     if getattr(cls, "model_id", None) in families), None)
    sensors = {}
    for key, sensor in DEFAULT_SENSORS.items():
        family, _, modality = key.partition(":")
        if family == model_id:
            sensors[modality or sensor.modality or "default"] = {
                k: v for k, v in asdict(sensor).items() if k in ("collection", "bands", "scale_m", "cloudy_pct", "composite", "use_float_linear")
            }
    return sensors
