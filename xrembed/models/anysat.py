"""AnySat: one JEPA-trained encoder for many resolutions, scales and modalities, here on Sentinel-2 time series.

Reference: Astruc, Gonthier, Mallet and Landrieu, *AnySat: One Earth Observation Model for Many
Resolutions, Scales, and Modalities* (CVPR 2025, arXiv 2412.14123); code github.com/gastruc/AnySat (MIT),
the parity reference (through ``scripts/goldens_anysat.py``); weights ``models/AnySat.pth`` on the Hugging
Face Hub (``g-astruc/AnySat``), the reference's ``AnyModule`` state dict in ``{'state_dict': ...}``.

Choices made here, each deliberate (see ``docs/models/anysat.md``):

* **Modality.** ``"s2"`` (also ``"optical"``, ``"s2_l2a"``): the 10 Sentinel-2 bands of AnySat's ``s2``
  input in its order ``B02 B03 B04 B05 B06 B07 B08 B8A B11 B12``, read as a time series. The other
  pre-training modalities' projectors are in the release and loaded strictly, but not wired yet (Sentinel-1
  needs the VV/VH/ratio layout and TreeSatAI's statistics checked; the VHR sensors are not on an S2 grid).
* **Time.** The adapter is ``temporal``: the input's ``time`` dimension (one date or a series) is one sample,
  and each date becomes its day of the year, ``1`` for 1 January (``timetuple().tm_yday``, what every
  AnySat data loader feeds; its README says ``01/01 = 0``, one day off from its own loaders). AnySat always
  encodes the date, so an input without a datetime ``time`` coordinate is refused with the fix
  (``da.expand_dims(time=[...])``) rather than given a made-up date.
* **Patch size in metres.** AnySat's ``patch_size`` is in metres (a multiple of 10); its Sentinel-2 input
  is 10 m, so a patch of ``p`` metres is ``p / 10`` pixels (the reference's ``patch_size // 10``). Each
  variant fixes one: ``base`` uses 40 m (4 x 4 px, as AnySat's PASTIS experiments), ``base-10m``,
  ``base-20m`` and ``base-80m`` the others. Pixels are taken to be 10 m whatever the raster's resolution
  (the reference fixes the S2 resolution too); feed 10 m Sentinel-2 for the model's intended scale.
* **Tiles** are 32 x 32 patches (1024, the README's advice "avoid more than 1024 patches per tile").
* **Grid output** is the reference's ``output='patch'``: one token per patch from the cross-attention
  read-out. **Pooled output** is its ``output='tile'`` (the read-out's class token) in resize mode; in tile
  mode, the valid-pixel-weighted mean of the grid tokens (a class token cannot be stitched across tiles).
* **Normalisation** is ``(x - mean) / std`` per band with the Sentinel-2 statistics of the authors' demo
  notebook (TreeSatAI-TS, the dataset of its example): AnySat's statistics are per dataset, and these are
  the only ones published with the release. Invalid pixels become 0 (the band mean) after normalising, and
  their cells are NaN in the output; the reference's ``pad_parameter`` mask path is not used.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from ..errors import BandMismatchError, OptionError
from .base import BandRequest, Checkpoint, InputContext, InputPlan, ModelAdapter, Variant
from .checks import check_raw_reflectance
from .sensors import S2_SR, SensorSpec

#: AnySat's ``s2`` band order (its README: B2, B3, B4, B5, B6, B7, B8, B8a, B11, B12).
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
#: The same bands in Earth Engine's spelling.
EE_S2_10 = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
#: Sentinel-2 statistics of the authors' demo notebook (``demo.ipynb``: ``MEAN_S2``, ``STD_S2``, TreeSatAI-TS).
S2_MEAN = (4304.32958984375, 4159.2666015625, 4057.776611328125, 4328.951171875, 4571.22119140625,
           4644.87109375, 4837.2470703125, 4700.2578125, 2823.264404296875, 2319.97021484375)
S2_STD = (3537.99755859375, 3324.23486328125, 3270.070068359375, 3250.530029296875, 2897.391357421875,
          2754.4970703125, 2821.521484375, 2625.952392578125, 1731.56298828125, 1549.3028564453125)
#: Ground resolution (m) of AnySat's Sentinel-2 input (the reference's ``res['s2']``).
S2_RESOLUTION_M = 10
#: Patches per tile side: 32 x 32 = 1024 patches per tile.
TILE_PATCHES = 32

_HF_REPO = "g-astruc/AnySat"
_HF_FILE = "models/AnySat.pth"


def _variant(name: str, patch_m: int, dim: int = 768, depth: int = 6, heads: int = 12) -> Variant:
    pixels = patch_m // S2_RESOLUTION_M
    return Variant(
        name=name, embed_dim=dim, depth=depth, num_heads=heads, patch_size=pixels, image_size=pixels * TILE_PATCHES,
        checkpoint=Checkpoint(repo_id=_HF_REPO, filename=_HF_FILE), extra=(("patch_size_m", patch_m),),
    )


def day_of_year(iso: str) -> int:
    """Day number of an ISO date as AnySat's loaders compute it: ``1`` for 1 January (``tm_yday``).

    Examples
    --------
    >>> day_of_year("2020-02-19")
    50
    >>> day_of_year("2021-12-31T10:30:00")
    365
    """
    return _dt.date.fromisoformat(iso[:10]).timetuple().tm_yday


class AnySat(ModelAdapter):
    model_id = "anysat"
    aliases = ("any-sat",)
    title = "AnySat: JEPA encoder for many resolutions, scales and modalities (Sentinel-2 time series)"
    variants = {
        "base": _variant("base", 40),
        "base-10m": _variant("base-10m", 10),
        "base-20m": _variant("base-20m", 20),
        "base-80m": _variant("base-80m", 80),
    }
    default_variant = "base"
    sensors = {"s2": SensorSpec(S2_SR, EE_S2_10, scale_m=10, modality="s2")}
    reference = "github.com/gastruc/AnySat (MIT; hubconf.py, src/models/networks/encoder), through scripts/goldens_anysat.py"
    licence = (
        "code: MIT (gastruc/AnySat); weights: the Hugging Face model card g-astruc/AnySat, released with the MIT "
        "code; a separate weights licence could not be checked offline [unverified]"
    )
    outputs = {
        "grid": "the cross-attention read-out's patch tokens (reference output='patch'), one per patch of "
        "patch_size_m metres (patch_size_m / 10 px)",
        "pooled": "resize mode: the read-out's class token (reference output='tile'); tile mode: the valid-pixel-"
        "weighted mean of the grid tokens",
    }
    temporal = True
    default_bands = S2_BANDS
    band_order = "model order: " + ",".join(S2_BANDS) + " (AnySat's s2 input; B01, B09 and B10 are not read); picked by name"
    lists_wavelengths = True
    input_values = "raw Sentinel-2 L2A reflectance 0..10000 (already-normalised [0, 1] rejected), one or more dates"
    normalisation = {
        "every band": "x' = (x - mean) / std",
        "mean": dict(zip(S2_BANDS, S2_MEAN)),
        "std": dict(zip(S2_BANDS, S2_STD)),
        "statistics": "the authors' demo notebook (TreeSatAI-TS Sentinel-2); AnySat's statistics are per dataset",
        "invalid pixels": "0 after normalising (the band mean); their cells are NaN in the output",
    }

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    accepted_modalities = (None, "s2", "optical", "s2_l2a")
    modality_message = (
        "anysat reads Sentinel-2 time series only (modality='s2'), not modality={modality!r}; its other "
        "pre-training modalities (Sentinel-1, Landsat, ALOS, MODIS, VHR) are not wired in xrembed yet."
    )
    no_wavelengths_message = (
        "anysat reads fixed bands and takes no wavelengths=; it reads the 10 Sentinel-2 bands "
        + ",".join(S2_BANDS) + " by name. Drop wavelengths= and name the bands."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=[...] in the input's order (anysat needs {wanted})."
    )
    missing_message = (
        "anysat needs the 10 Sentinel-2 bands {wanted}; the input lacks {missing} (it has {available}). "
        "Add the missing bands (B01 and B09 are not needed)."
    )
    bands_reorder_only = True  # bands= names exactly the 10 bands, in any order

    @property
    def patch_size_m(self) -> int:
        return int(dict(self.variant.extra)["patch_size_m"])

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        return (("scale", "reflectance"), ("days", self._days(req.context)))

    def _days(self, context: InputContext | None) -> tuple[int, ...]:
        times = context.times if context is not None else None
        if not times:
            raise OptionError(
                f"anysat/{self.variant.name} encodes the day of the year of each time step, but the input has no "
                "datetime 'time' dimension. Add one with the acquisition date, e.g. "
                "`da.expand_dims(time=[np.datetime64('2020-06-15')])`."
            )
        try:
            return tuple(day_of_year(t) for t in times)
        except ValueError:  # NaT
            raise OptionError(
                f"anysat/{self.variant.name} encodes the day of the year of each time step, but the input's 'time' "
                f"coordinate has a missing date ({list(times)}); give every time step its acquisition date."
            ) from None

    def describe_extra(self) -> dict[str, Any]:
        return {
            "modalities": {"s2": {"bands": list(S2_BANDS), "values": self.input_values, "reference_modality": "s2"}},
            "default_modality": "s2",
            "patch_size_m": self.patch_size_m,
            "patch_size_px": self.variant.patch_size,
            "pixel_size_m": S2_RESOLUTION_M,
            "temporal": {
                "time_steps": "1 or more (the input's datetime 'time' dimension, read as one sample)",
                "date_encoding": "day of the year, 1 for 1 January (the reference's s2_dates)",
                "requires_time_coordinate": True,
            },
            "released_sizes": ["base (dim 768, depth 6, 12 heads)"],
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .anysat_net import AnySatEncoder

        v = self.variant
        return AnySatEncoder(v.embed_dim, v.depth, v.num_heads)

    # -- run time ----------------------------------------------------------------------------
    def check_values(self, pixels, plan: InputPlan) -> None:
        check_raw_reflectance(pixels, "anysat", what="Sentinel-2 L2A reflectance")

    def normalise(self, pixels, plan):
        """Per-band standardisation of each frame (frame-major channels); NaN stays NaN."""
        from .normalise import standardise

        frames = pixels.shape[1] // len(S2_BANDS)
        return standardise(pixels, S2_MEAN * frames, S2_STD * frames)

    def _tokens(self, module, x, plan):
        """Read-out tokens ``(B, 1 + n * n, D)`` of normalised frame-major ``x`` ``(B, T * C, H, W)``."""
        import torch

        days = plan.option("days")
        b, channels, h, w = x.shape
        if channels != len(days) * len(S2_BANDS):
            raise BandMismatchError(
                f"anysat got {channels} channels for {len(days)} dates of {len(S2_BANDS)} bands; give the input one "
                "date per time step."
            )
        series = x.reshape(b, len(days), len(S2_BANDS), h, w)
        day_numbers = torch.tensor(days, dtype=torch.float32, device=x.device).expand(b, -1)
        return module(series, day_numbers, self.variant.patch_size, "s2")

    def forward_grid(self, module, x, plan):
        tokens = self._tokens(module, x, plan)[:, 1:]
        side = x.shape[-1] // self.variant.patch_size
        return tokens.reshape(x.shape[0], side, side, -1).permute(0, 3, 1, 2)

    def forward_pooled(self, module, x, plan):
        return self._tokens(module, x, plan)[:, 0]
