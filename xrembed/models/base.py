"""The contract every model family implements, and the value objects that describe it.

A family module (``dofa.py``, ...) declares its variants as data (:class:`Variant`), says how bands are
chosen and normalised, builds its ``nn.Module`` (imported lazily, so ``import xrembed`` and
``describe_model`` never import torch), and cleans checkpoint keys before a strict load. The engine knows
none of the family names: it calls the methods below.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..specs import SensorSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """Where the official weights of a variant live on the Hugging Face Hub."""

    repo_id: str
    filename: str
    revision: str | None = None

    @property
    def label(self) -> str:
        return f"hf://{self.repo_id}/{self.filename}" + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True, kw_only=True)
class UrlCheckpoint:
    """Official weights published at a plain URL (Zenodo, GitHub releases), cached under xrembed's cache.

    ``sha256`` is the checksum the publisher gives; the download is refused when it differs. Without one
    (``None``), the downloaded file is only checked to be a readable checkpoint.
    """

    url: str
    filename: str
    sha256: str | None = None

    @property
    def label(self) -> str:
        return self.url


@dataclass(frozen=True, kw_only=True)
class Variant:
    """Architecture and weights of one variant of a model family."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    image_size: int
    checkpoint: Checkpoint | UrlCheckpoint | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def tile_tokens(self) -> int:
        return self.image_size // self.patch_size


@dataclass(frozen=True, kw_only=True)
class InputContext:
    """What is known about the input without reading pixels, for models that need it.

    ``resolution_m`` is the pixel size in metres (the CRS unit for projected CRSs; degrees converted
    at the raster centre for geographic ones). ``times`` holds the ISO dates (``YYYY-MM-DD``) of the
    ``time`` coordinate, if the input has one; ``center_lonlat`` is the raster centre in WGS84.
    """

    resolution_m: float
    center_lonlat: tuple[float, float]
    times: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class InputPlan:
    """What the model will read, decided from metadata alone when ``embed()`` is called.

    ``bands`` are the canonical names of the input bands, in the order the model receives them.
    ``options`` holds whatever else the family needs at run time (wavelengths, modality), as a
    hashable tuple so that the plan can live in a dask graph.
    """

    bands: tuple[str, ...]
    options: tuple[tuple[str, Any], ...] = field(default=())

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


class ModelAdapter:
    """Base class of a model family. Subclasses set the class attributes and override the hooks."""

    model_id: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    title: ClassVar[str] = ""
    variants: ClassVar[dict[str, Variant]]
    default_variant: ClassVar[str]
    reference: ClassVar[str] = ""
    licence: ClassVar[str] = ""
    #: Human-readable meaning of each output, shown by ``describe_model``.
    outputs: ClassVar[dict[str, str]] = {}
    #: The bands read when the caller names none, in model order (canonical names).
    default_bands: ClassVar[tuple[str, ...]] = ()
    #: How the model orders and picks bands, in words.
    band_order: ClassVar[str] = ""
    #: True when ``describe_model`` lists the Sentinel-2 wavelengths of ``default_bands`` (wavelength-aware
    #: families, and RGB models that say which light they read); False gives ``wavelengths_um: None``.
    lists_wavelengths: ClassVar[bool] = False
    #: The values the model expects, in words.
    input_values: ClassVar[str] = ""
    #: How raw values are mapped before the network (formulae and statistics), shown verbatim.
    normalisation: ClassVar[Mapping[str, Any]] = {}
    #: True for models that read a time series as one input (e.g. Prithvi): the ``time`` dimension is
    #: folded into the channels, frame-major (``(B, T * C, H, W)``), and does not appear in the output.
    temporal: ClassVar[bool] = False
    #: The Earth Engine sensor this family reads by default, per modality; the first entry is the default.
    sensors: ClassVar[Mapping[str, SensorSpec]] = {}
    #: Other spellings of the modalities in ``sensors`` (``modality="sar"`` means ``"s1"``).
    modality_aliases: ClassVar[Mapping[str, str]] = {
        "s2_l2a": "s2", "optical": "s2", "sar": "s1", "l2a": "s2", "l1c": "s2_l1c",
    }

    def __init__(self, variant: str | None = None) -> None:
        from ..errors import UnknownModelError

        name = self.default_variant if variant is None else str(variant).lower()
        if name not in self.variants:
            raise UnknownModelError(
                f"model {self.model_id!r} has no variant {variant!r}; choose one of {sorted(self.variants)}."
            )
        self.variant = self.variants[name]

    @property
    def pooled_dim(self) -> int:
        """Length of the pooled vector; the grid's ``embed_dim`` unless the model projects (CLIP)."""
        return self.variant.embed_dim

    @classmethod
    def default_sensor(cls, modality: str | None = None) -> SensorSpec | None:
        """The Earth Engine sensor this family reads for ``modality`` (default: its first); ``None`` if it has none.

        Examples
        --------
        >>> from xrembed.models.terrafm import TerraFM
        >>> TerraFM.default_sensor("sar").collection
        'COPERNICUS/S1_GRD_FLOAT'
        """
        if not cls.sensors:
            return None
        if modality is None:
            return next(iter(cls.sensors.values()))
        key = str(modality).lower()
        return cls.sensors.get(cls.modality_aliases.get(key, key))

    # -- contract (metadata only) ------------------------------------------------------------
    def plan_inputs(
        self,
        available_bands: Sequence[str] | None,
        *,
        bands: Sequence[str] | None = None,
        wavelengths: Sequence[float] | None = None,
        modality: str | None = None,
        context: InputContext | None = None,
    ) -> InputPlan:
        """Choose and order the input bands; raise a clear error for anything the model cannot use.

        ``context`` carries pixel-free facts about the input (resolution, centre, dates).
        """
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The input contract of this variant (no weights are loaded), from the class data above.

        A family adds its own keys with :meth:`describe_extra`.
        """
        from ..bands import SENTINEL2_WAVELENGTHS_UM

        v = self.variant
        info: dict[str, Any] = {
            "model": self.model_id,
            "variant": v.name,
            "variants": sorted(self.variants),
            "title": self.title,
            "bands": list(self.default_bands),
            "band_order": self.band_order,
            "wavelengths_um": [SENTINEL2_WAVELENGTHS_UM[b] for b in self.default_bands]
            if self.lists_wavelengths
            else None,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "embed_dim": v.embed_dim,
            "input_values": self.input_values,
            "normalisation": copy.deepcopy(dict(self.normalisation)),
            "outputs": dict(self.outputs),
            "weights": v.checkpoint.label if v.checkpoint else None,
            "licence": self.licence,
            "reference": self.reference,
        }
        info.update(self.describe_extra())
        return info

    def describe_extra(self) -> dict[str, Any]:
        """Keys only this family has (modalities, time steps, GSD, ...), added to :meth:`describe`."""
        return {}

    # -- weights -----------------------------------------------------------------------------
    def build_module(self) -> nn.Module:
        """A randomly initialised module of this variant (call under a fixed seed)."""
        raise NotImplementedError

    def clean_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Documented key clean-up applied before the strict load."""
        return state_dict

    # -- run time ----------------------------------------------------------------------------
    def check_values(self, pixels: np.ndarray, plan: InputPlan) -> None:
        """Raise :class:`~xrembed.errors.InputRangeError` if valid pixels are on the wrong scale."""

    def normalise(self, pixels: torch.Tensor, plan: InputPlan) -> torch.Tensor:
        """Map raw values ``(B, C, H, W)`` to what the network expects. NaNs may pass through."""
        return pixels

    def forward_grid(self, module: nn.Module, x: torch.Tensor, plan: InputPlan) -> torch.Tensor:
        """Grid tokens ``(B, D, h, w)`` for model-size images ``x``."""
        raise NotImplementedError

    def forward_pooled(self, module: nn.Module, x: torch.Tensor, plan: InputPlan) -> torch.Tensor:
        """The model's own pooled vector ``(B, D)`` for model-size images ``x``."""
        raise NotImplementedError

    def pool_tokens(self, module: nn.Module, mean_tokens: torch.Tensor, plan: InputPlan) -> torch.Tensor:
        """Head applied to an (area-weighted) mean of grid tokens ``(B, D)``; identity by default."""
        return mean_tokens
