"""The contract every model family implements, and the value objects that describe it.

A family module (``dofa.py``, ...) declares its variants as data (:class:`Variant`), says how bands are
chosen and normalised, builds its ``nn.Module`` (imported lazily, so ``import xrembed`` and
``describe_model`` never import torch), and cleans checkpoint keys before a strict load. The engine knows
none of the family names: it calls the methods below.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..bands import SENTINEL2_WAVELENGTHS_UM, canonical_band_names
from ..errors import BandMismatchError, OptionError, WavelengthError
from ..specs import SensorSpec
from .band_sets import S1_BANDS

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


@dataclass(frozen=True, kw_only=True)
class BandRequest:
    """What the caller asked :meth:`ModelAdapter.plan_inputs` for, handed to its hooks.

    ``bands`` and ``available`` are canonical names (``None`` when not given / not named);
    ``given_bands`` and ``given_available`` are the caller's own spelling, for messages. ``modality`` is
    resolved (checked, aliases applied).
    """

    bands: list[str] | None
    available: list[str] | None
    given_bands: list[Any] | None
    given_available: list[Any] | None
    modality: str | None
    wavelengths: Sequence[float] | None
    context: InputContext | None


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

    # -- input contract as data (read by ``plan_inputs``; messages are ``str.format`` templates with the
    # fields ``model`` (the model id), ``name`` (``model/variant``) and those each hook names) --------------
    #: The bands read per modality, in model order; a modality not listed reads ``default_bands``.
    band_sets: ClassVar[Mapping[str | None, tuple[str, ...]]] = {}
    #: The ``modality=`` keywords accepted as given (``None``: not given); others raise ``OptionError``.
    accepted_modalities: ClassVar[tuple[str | None, ...]] = (None, "s2", "optical")
    modality_message: ClassVar[str] = "{model} reads optical bands only (modality='s2'), not modality={modality!r}."
    #: Families with a table of named modalities (TerraFM, CROMA, OlmoEarth, ...): ``modality=`` is one of
    #: these names in any case or one of ``modality_spellings``; ``modality_message`` names them otherwise.
    #: Empty: ``accepted_modalities`` and ``modality_aliases`` decide.
    modality_names: ClassVar[tuple[str, ...]] = ()
    modality_spellings: ClassVar[Mapping[str, str]] = {}
    #: Without ``modality=``: ``sar_modality`` when the bands are SAR alone (VV/VH), else ``default_modality``
    #: (``None``: decided later, from the bands chosen).
    default_modality: ClassVar[str | None] = None
    sar_modality: ClassVar[str | None] = None
    #: True when ``wavelengths=`` describes the input bands (DOFA); otherwise it is refused with
    #: ``wavelength_error(no_wavelengths_message)``.
    takes_wavelengths: ClassVar[bool] = False
    wavelength_error: ClassVar[type[Exception]] = OptionError
    no_wavelengths_message: ClassVar[str] = (
        "{model} reads fixed bands and takes no wavelengths=; name the bands instead."
    )
    #: True when a refused ``wavelengths=`` is reported before a wrong ``modality=`` (TerraFM's order).
    wavelengths_checked_first: ClassVar[bool] = False
    #: Wavelength (micrometres) of each band name a wavelength-aware family knows, and the message for others.
    band_wavelengths: ClassVar[Mapping[str, float]] = SENTINEL2_WAVELENGTHS_UM
    unknown_wavelength_message: ClassVar[str] = (
        "no wavelength is known for band {band!r}; pass wavelengths=[...] in micrometres, one per band."
    )
    #: Messages of the ``BandMismatchError`` s: input bands without names; a band listed twice (``chosen``);
    #: bands the input lacks (``wanted``, ``missing``, ``available``, ``given_available``, ``modality``), one
    #: template or one per modality (key ``None``: the others).
    unnamed_message: ClassVar[str] = "the input's bands are not named; name them with bands=[...]."
    #: ``bands=`` may only reorder the modality's fixed bands (TerraFM, CROMA, OlmoEarth): it must name exactly
    #: them (``exact_bands_message`` otherwise), and they are then picked from the input's names in model order.
    bands_reorder_only: ClassVar[bool] = False
    #: Without ``modality=``, ``bands=`` or ``wavelengths=``, input of SAR bands alone (VV/VH) is read as
    #: ``modality="s1"`` (DOFA, Panopticon: any-band families whose defaults are optical).
    sar_input_means_s1: ClassVar[bool] = False
    exact_bands_message: ClassVar[str] = (
        "{model} with modality={modality!r} reads exactly {count} bands {wanted}, but bands= names {given}: "
        "{bands}. Pass bands={wanted} (any order; they are fed in the model order)."
    )
    duplicates_message: ClassVar[str] = "bands {chosen} contain duplicates; list each band once."
    missing_message: ClassVar[str | Mapping[str | None, str]] = (
        "{model} reads bands {wanted}; the input lacks {missing} (it has {available})."
    )
    #: The ``scale`` option of the plan (which value check and normalisation apply).
    scale: ClassVar[str] = "reflectance"
    #: The ``checks.py`` function run on the pixels of each plan ``scale``, called as ``f(pixels, model_id)``
    #: (a plan without a ``scale`` option is checked as ``scale``); a scale not listed is not checked.
    value_checks: ClassVar[Mapping[str, Callable[[np.ndarray, str], None]]] = {}
    #: How the family runs tiles of another size than its ``image_size`` (``InputPrepSpec.tile(tile_size=N)``,
    #: ``embed(tile_size=N)``), in words (e.g. "position embedding resampled (bicubic, antialiased, as timm)"),
    #: or ``None``: such tiles are refused with ``fixed_size_reason``. A family opts in only once its network
    #: takes other grids and a test shows it equals its reference run at that size.
    other_tile_sizes: ClassVar[str | None] = None
    fixed_size_reason: ClassVar[str] = (
        "running it at another size than its pretraining size has not been checked against its reference"
    )

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

        ``context`` carries pixel-free facts about the input (resolution, centre, dates). Written once from
        the class data above: the modality is checked (:meth:`resolve_modality`), ``wavelengths=`` refused
        unless ``takes_wavelengths``, the bands chosen (:meth:`check_bands` for ``bands=``,
        :meth:`select_bands` otherwise) and the run-time options added (:meth:`plan_options`).
        """
        requested = canonical_band_names(bands) if bands is not None else None
        available = canonical_band_names(available_bands) if available_bands is not None else None
        refused = wavelengths is not None and not self.takes_wavelengths
        if refused and self.wavelengths_checked_first:
            raise self.wavelength_error(self.say(self.no_wavelengths_message))
        resolved = self.resolve_modality(modality, requested if requested is not None else available)
        if refused:
            raise self.wavelength_error(self.say(self.no_wavelengths_message))
        req = BandRequest(
            bands=requested, available=available, modality=resolved, wavelengths=wavelengths, context=context,
            given_bands=list(bands) if bands is not None else None,
            given_available=list(available_bands) if available_bands is not None else None,
        )
        chosen = self.choose_bands(req)
        return InputPlan(bands=tuple(chosen), options=self.plan_options(list(chosen), req))

    # -- hooks of plan_inputs ----------------------------------------------------------------
    def say(self, template: str, **fields: Any) -> str:
        """``template`` formatted with ``model``, ``name`` (``model/variant``) and ``fields``."""
        return template.format(model=self.model_id, name=f"{self.model_id}/{self.variant.name}", **fields)

    def resolve_modality(self, modality: str | None, names: list[str] | None) -> str | None:
        """Check ``modality=`` against ``accepted_modalities`` and resolve ``modality_aliases``.

        ``names`` are the requested (or else the input's) canonical bands, for families that infer it. Families
        with ``modality_names`` get the name in its canonical spelling (or their default).
        """
        if self.modality_names:
            return self._named_modality(modality, names)
        if modality not in self.accepted_modalities:
            raise OptionError(self.modality_refusal(modality))
        return self.modality_aliases.get(modality, modality) if modality is not None else None

    def _named_modality(self, modality: str | None, names: list[str] | None) -> str | None:
        if modality is None:
            sar_alone = bool(names) and set(names) <= set(S1_BANDS)
            return self.sar_modality if sar_alone and self.sar_modality else self.default_modality
        text = str(modality).strip().lower()
        text = self.modality_spellings.get(text, text)
        if text not in self.modality_names:
            raise OptionError(self.modality_refusal(modality))
        return text

    def modality_refusal(self, modality: Any) -> str:
        return self.say(self.modality_message, modality=modality)

    def bands_for(self, modality: str | None) -> tuple[str, ...]:
        """The bands the model reads for ``modality``, in model order."""
        return tuple(self.band_sets[modality]) if modality in self.band_sets else tuple(self.default_bands)

    def choose_bands(self, req: BandRequest) -> list[str]:
        """The bands to read: ``bands=`` checked, or picked from the input's named bands."""
        if req.bands is not None:
            chosen = self.check_bands(req)
            if not self.bands_reorder_only:
                return chosen
        if req.available is None:
            wanted = list(self.bands_for(req.modality))
            raise BandMismatchError(self.say(self.unnamed_message, modality=req.modality, wanted=wanted))
        return self.select_bands(req)

    def check_bands(self, req: BandRequest) -> list[str]:
        """``bands=`` given: check it (default: each band once; with ``bands_reorder_only``, exactly the
        modality's bands) and return the bands in feed order."""
        self.refuse_duplicates(req.bands)
        if not self.bands_reorder_only:
            return list(req.bands)
        wanted = list(self.bands_for(req.modality))
        if len(req.bands) != len(wanted) or set(req.bands) != set(wanted):
            raise BandMismatchError(self.say(
                self.exact_bands_message, modality=req.modality, count=len(wanted), wanted=wanted,
                given=len(req.bands), bands=req.bands,
            ))
        return wanted

    def select_bands(self, req: BandRequest) -> list[str]:
        """No ``bands=``: the modality's bands, picked by name from the input (all of them when the caller
        describes every band with ``wavelengths=``)."""
        if req.wavelengths is not None:
            return list(req.available)
        if self.sar_input_means_s1 and req.modality is None and set(req.available) <= set(S1_BANDS):
            req = replace(req, modality="s1")
        wanted = self.bands_for(req.modality)
        missing = [b for b in wanted if b not in req.available]
        if missing:
            raise BandMismatchError(self.missing_text(req, wanted, missing))
        return list(wanted)

    def missing_text(self, req: BandRequest, wanted: Sequence[str], missing: list[str]) -> str:
        template = self.missing_message
        if not isinstance(template, str):
            template = template[req.modality] if req.modality in template else template[None]
        return self.say(
            template, wanted=list(wanted), missing=missing, available=req.available,
            given_available=req.given_available, modality=req.modality,
        )

    def refuse_duplicates(self, chosen: list[str], **fields: Any) -> None:
        if len(set(chosen)) != len(chosen):
            raise BandMismatchError(self.say(self.duplicates_message, chosen=chosen, **fields))

    def wavelengths_of(self, chosen: list[str], wavelengths: Sequence[float] | None) -> tuple[float, ...]:
        """``wavelengths=`` checked against ``chosen``, or each band's from ``band_wavelengths``."""
        from .checks import check_wavelengths

        if wavelengths is not None:
            return check_wavelengths(wavelengths, chosen)
        for band in chosen:
            if band not in self.band_wavelengths:
                raise WavelengthError(self.say(self.unknown_wavelength_message, band=band))
        return tuple(self.band_wavelengths[b] for b in chosen)

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        """What run time needs besides the bands (``InputPlan.options``); default: the ``scale``."""
        return (("scale", self.scale),)

    def check_tile_size(self, size: int) -> int:
        """``size`` (pixels) if this variant can run tiles of that size, else :class:`OptionError` naming the fix.

        A tile is a whole number of patches; a size other than ``image_size`` needs ``other_tile_sizes``.

        Examples
        --------
        >>> from xrembed.models.dofa import DOFA
        >>> DOFA().check_tile_size(448)
        448
        """
        v = self.variant
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise OptionError(f"tile_size must be a positive number of pixels (or None), got {size!r}.")
        size = int(size)
        if size == v.image_size:
            return size
        if size % v.patch_size:
            raise OptionError(
                f"tile_size={size}: tiles of {self.model_id!r} must be a whole number of its {v.patch_size} px "
                f"patches; pass tile_size=None (its own {v.image_size} px) or a multiple of {v.patch_size}."
            )
        if self.other_tile_sizes is None:
            raise OptionError(
                f"tile_size={size}: {self.model_id!r} runs only on its pretraining size of {v.image_size} px: "
                f"{self.fixed_size_reason}. Pass tile_size=None or tile_size={v.image_size}."
            )
        return size

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
            "tile_sizes": (
                f"any multiple of {v.patch_size} px, {v.image_size} px by default (its pretraining size; others are a "
                f"departure from it: {self.other_tile_sizes})"
                if self.other_tile_sizes is not None
                else f"{v.image_size} px only: {self.fixed_size_reason}"
            ),
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
        check = self.value_checks.get(plan.option("scale", self.scale))
        if check is not None:
            check(pixels, self.model_id)

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
