"""Prithvi-EO-2.0 (IBM / NASA): a temporal ViT for six HLS bands, with optional date and location encoders.

Reference: Szwarcman et al., *Prithvi-EO-2.0: A Versatile Multi-Temporal Foundation Model for Earth
Observation Applications* (2024); code terratorch ``terratorch.models.backbones.prithvi_mae`` /
``prithvi_vit`` (Apache-2.0), which is the runnable reference our parity test compares against;
github.com/NASA-IMPACT/Prithvi-EO-2.0 (MIT).

Choices made here, each deliberate:

* **Time series.** The adapter is ``temporal``: the engine folds the input's ``time`` dimension into the
  channels, frame-major, and the model reads up to ``num_frames`` = 4 frames (the pre-training config)
  as one sample; more frames are refused with a message naming the fix. An input without a time
  dimension is one frame. The output has no time dimension.
* **Dates and location (TL variants).** The ``time`` coordinate's dates feed the temporal encoder as
  (year, day of year, 1-based), and the centre of the whole raster (not of each tile, so values do not
  depend on chunking) feeds the location encoder as (latitude, longitude) in degrees. A TL variant on an
  input without a datetime ``time`` coordinate is refused at ``embed()`` time: the fix is to add one, or
  to use a variant without coordinate encoders (``300m``, ``600m``). Non-TL variants ignore both.
* **Grid output** is the final-normed patch tokens of each frame, averaged over the frames: one
  ``(D,)`` vector per 16 x 16 px patch (14 x 14 px for the 600M variants).
* **Pooled output** is the mean of the normed patch tokens over (frames, rows, columns), CLS excluded
  (upstream defines no pooled output; this is also rs-embed's choice). It equals the mean of the grid,
  so in tile mode the valid-area-weighted mean of grid cells is used with no extra head.
* **Position embedding.** The stored ``pos_embed`` is a fixed sin-cos table whose size depends on the
  number of frames the checkpoint was saved with (4 for the official files); like terratorch's
  ``checkpoint_filter_fn_vit``, the clean-up replaces it with the model's own table, and the forward pass
  evaluates the same fixed function for the actual number of frames.
* **Bands.** HLS ``BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2`` are taken from Sentinel-2 as
  B02, B03, B04, B8A, B11, B12 (HLS S30 uses B8A, the narrow NIR, not B08). Inputs whose bands carry the
  HLS names are accepted as well. Values are raw reflectance x 10000, standardised with the
  Prithvi-EO-2.0 mean/std (rs-embed maps the narrow NIR to B08 and divides by 10000 without
  standardising; we follow terratorch).
"""

from __future__ import annotations

import datetime as _dt
from functools import partial
from typing import Any

from ..errors import BandMismatchError, OptionError, WavelengthError
from .base import BandRequest, Checkpoint, InputContext, InputPlan, ModelAdapter, Variant
from .checks import check_raw_reflectance
from .normalise import standardise
from .sensors import S2_SR, SensorSpec

#: Sentinel-2 bands that stand in for the six HLS bands, in model order.
DEFAULT_BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")
#: The same bands under their HLS names (accepted in the input too).
HLS_BANDS = ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")

#: terratorch ``PRITHVI_V2_MEAN`` / ``PRITHVI_V2_STD`` (raw HLS reflectance x 10000).
MEAN = (1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0)
STD = (2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0)

#: Frames in the pre-training configuration (terratorch ``prithvi_cfgs[...]["num_frames"]``).
MAX_FRAMES = 4

_HF = "ibm-nasa-geospatial/Prithvi-EO-2.0-"


def _variant(name, dim, depth, heads, patch, repo, filename, coords):
    return Variant(
        name=name, embed_dim=dim, depth=depth, num_heads=heads, patch_size=patch, image_size=224,
        checkpoint=Checkpoint(repo_id=_HF + repo, filename=filename),
        extra=(("coords", coords), ("max_frames", MAX_FRAMES)),
    )


def _day_of_year(iso: str) -> tuple[int, int]:
    date = _dt.date.fromisoformat(iso[:10])
    return date.year, date.timetuple().tm_yday


class Prithvi(ModelAdapter):
    model_id = "prithvi"
    aliases = ("prithvi-eo-2", "prithvi_eo_v2")
    title = "Prithvi-EO-2.0: multi-temporal ViT for HLS (Sentinel-2 / Landsat) with date and location encoders"
    variants = {
        "100m_tl": _variant("100m_tl", 768, 12, 12, 16, "100M-TL", "Prithvi_EO_V2_100M_TL.pt", True),
        "300m": _variant("300m", 1024, 24, 16, 16, "300M", "Prithvi_EO_V2_300M.pt", False),
        "300m_tl": _variant("300m_tl", 1024, 24, 16, 16, "300M-TL", "Prithvi_EO_V2_300M_TL.pt", True),
        "600m": _variant("600m", 1280, 32, 16, 14, "600M", "Prithvi_EO_V2_600M.pt", False),
        "600m_tl": _variant("600m_tl", 1280, 32, 16, 14, "600M-TL", "Prithvi_EO_V2_600M_TL.pt", True),
    }
    default_variant = "100m_tl"
    # HLS S30 bands (narrow NIR B8A) at HLS's 30 m.
    sensors = {"s2": SensorSpec(S2_SR, ("B2", "B3", "B4", "B8A", "B11", "B12"), scale_m=30, modality="s2")}
    reference = (
        "https://github.com/NASA-IMPACT/Prithvi-EO-2.0 (parity: terratorch 1.2.11 "
        "terratorch.models.backbones.prithvi_mae.PrithviViT)"
    )
    licence = "code Apache-2.0 (terratorch) / MIT (NASA-IMPACT); weights Apache-2.0 (model cards, unverified offline)"
    #: Tiles of another size (``tile_size=``): see :mod:`xrembed.models.pos_embed`.
    other_tile_sizes = (
        "native: the fixed 3-D sin-cos position embedding is evaluated for the tile's patch grid, as terratorch's PrithviViT does for any input size (nothing is interpolated)"
    )
    outputs = {
        "grid": "final-normed patch tokens of each frame, averaged over the frames (time), one per patch",
        "pooled": "mean of the normed patch tokens over frames and patches, CLS excluded (upstream defines "
        "none); in tile mode the mean is weighted by each cell's valid pixel count",
    }
    temporal = True
    default_bands = DEFAULT_BANDS
    band_order = (
        "model order: " + ",".join(DEFAULT_BANDS) + " = HLS " + ",".join(HLS_BANDS)
        + " (inputs with the HLS names are accepted too)"
    )
    input_values = "raw HLS / Sentinel-2 L2A surface reflectance x 10000 (already-normalised [0, 1] rejected)"
    value_checks = {"reflectance": partial(check_raw_reflectance, what="HLS / Sentinel-2 reflectance")}
    normalisation = {
        "reflectance": "(x - mean) / std per band",
        "mean": dict(zip(DEFAULT_BANDS, MEAN)),
        "std": dict(zip(DEFAULT_BANDS, STD)),
    }

    @property
    def coords_encoding(self) -> bool:
        return bool(dict(self.variant.extra)["coords"])

    @property
    def max_frames(self) -> int:
        return int(dict(self.variant.extra)["max_frames"])

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    accepted_modalities = (None, "s2", "optical", "hls")
    modality_message = (
        "{name} reads optical HLS / Sentinel-2 reflectance only (modality='s2'), not modality={modality!r}."
    )
    wavelength_error = WavelengthError
    no_wavelengths_message = (
        "{name} reads six fixed HLS bands and takes no wavelengths=; drop it and pick the bands with "
        f"bands=[...] (six, in the order {list(DEFAULT_BANDS)})."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=[...] ({name} reads "
        f"{list(DEFAULT_BANDS)}, i.e. HLS {list(HLS_BANDS)}, in that order)."
    )

    def check_bands(self, req: BandRequest) -> list[str]:
        """Any six bands, fed in the order given."""
        chosen = req.bands
        if len(chosen) != len(DEFAULT_BANDS):
            raise BandMismatchError(
                f"{self.say('{name}')} reads exactly {len(DEFAULT_BANDS)} bands (HLS {', '.join(HLS_BANDS)}; "
                f"from Sentinel-2 {', '.join(DEFAULT_BANDS)}) but bands= names {len(chosen)}: {chosen}. "
                "Give six bands in that order."
            )
        self.refuse_duplicates(chosen)
        return list(chosen)

    def select_bands(self, req: BandRequest) -> list[str]:
        """Each HLS band by its Sentinel-2 name, or else by its HLS name."""
        available = req.available
        chosen, missing = [], []
        for s2, hls in zip(DEFAULT_BANDS, HLS_BANDS):
            if s2 in available:
                chosen.append(s2)
            elif hls in available:
                chosen.append(hls)
            else:
                missing.append(s2)
        if missing:
            hint = (
                " Prithvi's NIR is the narrow NIR (B8A); to use the broad B08 instead, list the six bands "
                "yourself with bands=[...]."
                if "B8A" in missing and "B08" in available
                else ""
            )
            raise BandMismatchError(
                f"{self.model_id} reads the HLS bands {list(HLS_BANDS)} = Sentinel-2 {list(DEFAULT_BANDS)}; the input "
                f"lacks {missing} (it has {available}). Add them, or name six input bands in this order with "
                f"bands=[...].{hint}"
            )
        return chosen

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        frames, temporal_coords, location_coords = self._time_and_place(req.context)
        return (
            ("frames", frames),
            ("temporal_coords", temporal_coords),
            ("location_coords", location_coords),
            ("mean", MEAN),
            ("std", STD),
            ("scale", "reflectance"),
        )

    def _time_and_place(self, context: InputContext | None):
        times = context.times if context is not None else None
        frames = len(times) if times else 1
        name = f"{self.model_id}/{self.variant.name}"
        if frames > self.max_frames:
            raise OptionError(
                f"{name} reads at most {self.max_frames} time steps as one sample, the input has {frames}: "
                f"select fewer, e.g. `da.isel(time=slice(0, {self.max_frames}))`, or embed groups of time steps separately."
            )
        if not self.coords_encoding:
            return frames, None, None
        if not times:
            raise OptionError(
                f"{name} encodes the acquisition date, but the input has no datetime 'time' coordinate. Add one, "
                "e.g. `da.expand_dims(time=[np.datetime64('2020-02-19')])`, or use a variant without date/location "
                "encoding (variant='300m' or '600m')."
            )
        temporal = tuple(_day_of_year(t) for t in times)
        lon, lat = context.center_lonlat
        return frames, temporal, (float(lat), float(lon))

    def describe_extra(self) -> dict[str, Any]:
        return {
            "hls_bands": list(HLS_BANDS),
            "temporal": {
                "time_steps": f"1..{self.max_frames} (the input's 'time' dimension, read as one sample; "
                "no 'time' dimension = 1 step)",
                "date_encoding": "(year, day of year) of each time step" if self.coords_encoding else None,
                "location_encoding": "(lat, lon) of the raster centre, degrees" if self.coords_encoding else None,
                "requires_time_coordinate": self.coords_encoding,
            },
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .prithvi_net import PrithviEncoder

        v = self.variant
        return PrithviEncoder(
            v.embed_dim, v.depth, v.num_heads, v.patch_size, v.image_size,
            in_chans=len(DEFAULT_BANDS), num_frames=1, coords_encoding=self.coords_encoding,
        )

    def clean_state_dict(self, state_dict):
        """Turn an official Prithvi-EO-2.0 MAE checkpoint into the encoder's keys (terratorch's filter).

        Strips the legacy ``_timm_module.`` infix; drops the decoder (``decoder.*``, ``*_dec*``) and
        ``mask_token``; drops ``temporal_embed*``/``location_embed*`` for variants without coordinate
        encoders; strips the ``encoder.`` prefix; and replaces the fixed ``pos_embed`` (sized for the
        frames the file was saved with) by the model's own sin-cos table.
        """
        from .prithvi_net import sincos_3d

        cleaned = {}
        for key, value in state_dict.items():
            key = key.replace("_timm_module.", "")
            if "decoder" in key or "_dec" in key or key == "mask_token":
                continue
            if key.startswith("encoder."):
                key = key[len("encoder.") :]
            if not self.coords_encoding and ("temporal_embed" in key or "location_embed" in key):
                continue
            cleaned[key] = value
        if "pos_embed" in cleaned:
            v = self.variant
            side = v.image_size // v.patch_size
            cleaned["pos_embed"] = sincos_3d(v.embed_dim, 1, side, side)
        return cleaned

    # -- run time ----------------------------------------------------------------------------
    def _frames(self, x, plan: InputPlan) -> int:
        channels = len(DEFAULT_BANDS)
        if x.shape[1] % channels:
            raise BandMismatchError(
                f"{self.model_id} got {x.shape[1]} channels, not a multiple of its {channels} bands; "
                f"give the bands {list(DEFAULT_BANDS)} (one set per time step)."
            )
        frames = x.shape[1] // channels
        if frames > self.max_frames:
            raise OptionError(
                f"{self.model_id}/{self.variant.name} reads at most {self.max_frames} time steps, the input has "
                f"{frames}: select fewer, e.g. `da.isel(time=slice(0, {self.max_frames}))`."
            )
        return frames

    def normalise(self, pixels, plan):
        b, _, h, w = pixels.shape
        frames = self._frames(pixels, plan)
        # Frame-major channels: standardise each frame's bands as one image of the batch.
        per_frame = pixels.reshape(b * frames, -1, h, w)
        return standardise(per_frame, plan.option("mean"), plan.option("std")).reshape(b, -1, h, w)

    def _tokens(self, module, x, plan):
        """Normed patch tokens ``(B, T, h, w, D)`` for folded input ``(B, T*C, H, W)``."""
        import torch

        b, _, h, w = x.shape
        frames = self._frames(x, plan)
        video = x.reshape(b, frames, -1, h, w).transpose(1, 2)  # (B, C, T, H, W)
        temporal = location = None
        if self.coords_encoding:
            dates, place = plan.option("temporal_coords"), plan.option("location_coords")
            if dates is not None:
                if len(dates) != frames:
                    raise OptionError(
                        f"{self.model_id}: the plan has {len(dates)} dates but the input has {frames} time steps; "
                        "give the input a 'time' coordinate with one date per step."
                    )
                temporal = torch.tensor(dates, dtype=torch.float32, device=x.device).expand(b, -1, -1)
            if place is not None:
                location = torch.tensor(place, dtype=torch.float32, device=x.device).expand(b, -1)
        return module.forward_tokens(video, temporal, location)

    def forward_grid(self, module, x, plan):
        return self._tokens(module, x, plan).mean(dim=1).permute(0, 3, 1, 2)

    def forward_pooled(self, module, x, plan):
        return self._tokens(module, x, plan).mean(dim=(1, 2, 3))
