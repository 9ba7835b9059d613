"""The model registry: ids, aliases and the adapter class of each family.

Adding a family means writing one module with a :class:`~xrembed.models.base.ModelAdapter` subclass and
listing it in ``_FAMILIES``. Nothing here imports torch. Describing models and products together is
:mod:`xrembed.catalog`'s job.
"""

from __future__ import annotations

from ..errors import UnknownModelError
from .anysat import AnySat
from .base import ModelAdapter
from .copernicus_fm import CopernicusFM
from .clay import Clay
from .croma import CROMA
from .dofa import DOFA
from .dofa_clip import DOFACLIP
from .galileo import Galileo
from .olmoearth import OlmoEarth
from .panopticon import Panopticon
from .prithvi import Prithvi
from .remoteclip import RemoteCLIP
from .satmae import SatMAE
from .scalemae import ScaleMAE
from .terrafm import TerraFM
from .terramind import TerraMind

_FAMILIES: tuple[type[ModelAdapter], ...] = (DOFA, DOFACLIP, Prithvi, RemoteCLIP, SatMAE, ScaleMAE, TerraFM, CROMA, Panopticon, OlmoEarth, Galileo, AnySat, TerraMind, Clay, CopernicusFM)

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
