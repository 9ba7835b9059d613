"""Clay v1.5: a sensor-agnostic MAE ViT-L/8 whose patch embedding is generated from the band wavelengths.

Reference: Clay Foundation, *Clay v1.5* (github.com/Clay-foundation/model, Apache-2.0, code and weights);
terratorch 1.2.11 ``terratorch.models.backbones.clay_v15`` (Apache-2.0), the runnable reference of the parity
tests; weights ``made-with-clay/Clay`` ``v1.5/clay-v1.5.ckpt`` on the Hugging Face Hub.

Choices made here, each deliberate (see ``docs/models/clay.md``):

* **Modalities and bands.** ``"s2"`` (default; ``"s2_l2a"``, ``"optical"``) reads the 10 Sentinel-2 L2A
  bands of Clay's ``sentinel-2-l2a`` platform, ``B02 B03 B04 B05 B06 B07 B08 B8A B11 B12`` (no B01, B09);
  ``"s1"`` (``"sar"``; the default when the input has only VV/VH) reads VV, VH in dB, Clay's
  ``sentinel-1-rtc`` platform. Clay reads any subset of a platform's bands (its embedding tutorial uses
  red, green, blue, nir): ``bands=`` picks some, in any order. Each band's wavelength (micrometres), mean
  and std are Clay's ``configs/metadata.yaml`` (copied below; commit noted in ``METADATA_SOURCE``).
* **Metadata from the raster, at ``embed()`` time.** GSD is the raster's pixel size in metres. Latitude
  and longitude are the *raster* centre for every tile (a tile centre would need the tile's position,
  which the engine does not hand to the model; the raster centre keeps results chunk-invariant), encoded
  ``(sin, cos)`` of each in radians. Time is the date of the input's ``time`` coordinate (one step):
  ``(sin, cos)`` of ISO week * 2 pi / 52 and of hour * 2 pi / 24; xrembed reads dates at day precision,
  so the hour is 0 (UTC midnight). Without a datetime ``time`` coordinate the four time values are 0, the
  encoding Clay was trained with for unknown metadata (its data module zeroes time and lat/lon of 20 % of
  the chips). Several time steps are refused: Clay embeds one acquisition at a time.
* **Grid output** is the encoder's patch tokens (after its final norm), one per 8 x 8 px patch. **Pooled
  output** in resize mode is the class token (Clay's embedding); in tile mode (a class token cannot be
  assembled from tiles) the valid-pixel-weighted mean of the grid tokens.
* **Tiles** are 256 px (32 x 32 patches), Clay's training chip size. The encoder runs without masking
  (``mask_ratio=0``, no shuffle), as Clay's embedding path does.
* **Normalisation** is Clay's: ``(x - mean) / std`` per band with the platform's statistics; invalid
  pixels become 0 (the mean) and their cells NaN in the output.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from ..errors import BandMismatchError, OptionError
from .base import BandRequest, Checkpoint, InputContext, InputPlan, ModelAdapter, Variant
from .band_sets import S1_BANDS
from .checks import check_db_backscatter, check_raw_reflectance
from .sensors import S1_DB_SENSOR, S2_SR, SensorSpec

#: Where the per-platform statistics and wavelengths below come from.
METADATA_SOURCE = (
    "github.com/Clay-foundation/model configs/metadata.yaml (commit 12a61c0b64a920107da269c66982cd8122509d20)"
)
#: Clay's ``sentinel-2-l2a`` band order, as xrembed names the bands (blue .. swir22).
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
S2_METADATA = {  # band: (Clay's name, wavelength in micrometres, mean, std)
    "B02": ("blue", 0.493, 1105.0, 1809.0),
    "B03": ("green", 0.56, 1355.0, 1757.0),
    "B04": ("red", 0.665, 1552.0, 1888.0),
    "B05": ("rededge1", 0.704, 1887.0, 1870.0),
    "B06": ("rededge2", 0.74, 2422.0, 1732.0),
    "B07": ("rededge3", 0.783, 2630.0, 1697.0),
    "B08": ("nir", 0.842, 2743.0, 1742.0),
    "B8A": ("nir08", 0.865, 2785.0, 1648.0),
    "B11": ("swir16", 1.61, 2388.0, 1470.0),
    "B12": ("swir22", 2.19, 1835.0, 1379.0),
}
#: Clay's ``sentinel-1-rtc``: dB backscatter; the "wavelengths" are Clay's own stand-in codes for VV/VH.
S1_METADATA = {
    "VV": ("vv", 3.5, -12.113, 8.314),
    "VH": ("vh", 4.0, -18.673, 8.017),
}

#: modality -> (Clay platform, bands, per-band metadata, value scale, platform GSD in m, what the values are)
MODALITIES: dict[str, tuple[str, tuple[str, ...], dict, str, float, str]] = {
    "s2": ("sentinel-2-l2a", S2_BANDS, S2_METADATA, "reflectance", 10.0,
           "Sentinel-2 L2A surface reflectance, raw 0..10000"),
    "s1": ("sentinel-1-rtc", S1_BANDS, S1_METADATA, "db", 10.0,
           "Sentinel-1 backscatter in dB (Clay trained on RTC gamma0, 10 log10)"),
}
_MODALITY_SPELLINGS = {"optical": "s2", "s2_l2a": "s2", "l2a": "s2", "sentinel-2-l2a": "s2", "sentinel2": "s2",
                       "sar": "s1", "sentinel-1-rtc": "s1", "sentinel1": "s1"}

EE_S2_CLAY = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")


def time_code(iso: str | None) -> tuple[float, float, float, float]:
    """Clay's time encoding of an ISO date(-time): ``(sin, cos)`` of ISO week * 2 pi / 52, then of hour * 2 pi / 24.

    ``None`` (no date known) gives zeros, Clay's encoding of unknown metadata.

    Examples
    --------
    >>> [round(v, 4) for v in time_code("2020-02-19")]
    [0.823, 0.5681, 0.0, 1.0]
    """
    if iso is None:
        return (0.0, 0.0, 0.0, 0.0)
    moment = _dt.datetime.fromisoformat(iso)
    week = moment.isocalendar().week * 2 * math.pi / 52
    hour = moment.hour * 2 * math.pi / 24
    return (math.sin(week), math.cos(week), math.sin(hour), math.cos(hour))


def latlon_code(lon: float, lat: float) -> tuple[float, float, float, float]:
    """Clay's location encoding: ``(sin lat, cos lat, sin lon, cos lon)``, angles in radians."""
    lat_r, lon_r = math.radians(lat), math.radians(lon)
    return (math.sin(lat_r), math.cos(lat_r), math.sin(lon_r), math.cos(lon_r))


class Clay(ModelAdapter):
    model_id = "clay"
    aliases = ("clay-v1.5", "clay_v15")
    title = "Clay v1.5: sensor-agnostic MAE ViT-L/8 with wavelength-generated patch embedding"
    variants = {
        "v1.5": Variant(
            name="v1.5", embed_dim=1024, depth=24, num_heads=16, patch_size=8, image_size=256,
            checkpoint=Checkpoint(repo_id="made-with-clay/Clay", filename="v1.5/clay-v1.5.ckpt"),
            extra=(("dim_head", 64), ("mlp_ratio", 4.0)),
        ),
    }
    default_variant = "v1.5"
    sensors = {
        "s2": SensorSpec(S2_SR, EE_S2_CLAY, scale_m=10, modality="s2"),
        "s1": S1_DB_SENSOR,
    }
    reference = (
        "terratorch.models.backbones.clay_v15 (terratorch 1.2.11, Apache-2.0; after github.com/Clay-foundation/model)"
    )
    licence = (
        "code and weights: Apache-2.0 (Clay-foundation/model README: 'This applies to the source code as well as "
        "the trained model weights'); model card on hf made-with-clay/Clay not checked offline [unverified]"
    )
    outputs = {
        "grid": "the encoder's normed patch tokens, one per 8 x 8 px patch",
        "pooled": "resize mode: the class token (Clay's embedding); tile mode: the valid-pixel-weighted mean of the "
        "grid tokens (a class token cannot be assembled from tiles)",
    }
    default_bands = S2_BANDS
    band_order = ("the input's order among the platform's bands (any subset); default " + ",".join(S2_BANDS)
                  + " (s2, Clay's sentinel-2-l2a) or VV,VH (s1, sentinel-1-rtc)")
    input_values = (
        "s2: raw Sentinel-2 L2A reflectance 0..10000 (already-normalised [0, 1] rejected); s1: backscatter in dB "
        "(linear power rejected)"
    )
    normalisation = {
        "every band": "(x - mean) / std with Clay's per-platform statistics (" + METADATA_SOURCE + ")",
        "s2 mean": {b: m for b, (_, _, m, _) in S2_METADATA.items()},
        "s2 std": {b: s for b, (_, _, _, s) in S2_METADATA.items()},
        "s1 mean": {b: m for b, (_, _, m, _) in S1_METADATA.items()},
        "s1 std": {b: s for b, (_, _, _, s) in S1_METADATA.items()},
        "invalid pixels": "0 after normalising (the band mean); their cells are NaN in the output",
    }

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    band_sets = {name: spec[1] for name, spec in MODALITIES.items()}
    # the base's named-modality policy; without modality= it is decided from the bands chosen (VV/VH alone: s1)
    modality_names = tuple(MODALITIES)
    modality_spellings = _MODALITY_SPELLINGS
    modality_message = (
        "{model} takes modality='s2' (Sentinel-2 L2A, the default) or 's1' (Sentinel-1 VV/VH in dB), not {modality!r}."
    )
    no_wavelengths_message = (
        "clay takes no wavelengths=: each band is normalised with the statistics Clay publishes for its platform, "
        "so bands are named instead (Sentinel-2 L2A B02..B12 without B01/B09, or VV/VH)."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=[...] in the input's order "
        "(clay with modality={modality!r} reads {wanted}, or a subset)."
    )
    missing_message = (
        "clay with modality={modality!r} reads bands {wanted}; the input lacks {missing} (it has {available}). "
        "Add them, pick the bands you have with bands=[...] (Clay reads any subset), or choose another modality=."
    )
    sar_input_means_s1 = True
    other_tile_sizes = (
        "the 2-D sin/cos grid encoding is computed for the tile's grid (no stored table), as the reference computes "
        "it for any square input; Clay was trained on 256 px chips"
    )

    @property
    def dim_head(self) -> int:
        v = self.variant
        return int(dict(v.extra).get("dim_head", v.embed_dim // v.num_heads))

    @property
    def mlp_ratio(self) -> float:
        return float(dict(self.variant.extra).get("mlp_ratio", 4.0))

    def _modality_of(self, chosen: list[str], req: BandRequest) -> str:
        if req.modality is not None:
            return req.modality
        return "s1" if chosen and set(chosen) <= set(S1_BANDS) else "s2"

    def check_bands(self, req: BandRequest) -> list[str]:
        """``bands=``: any bands of one platform, each once, fed in the given order."""
        self.refuse_duplicates(req.bands)
        modality = self._modality_of(req.bands, req)
        known = MODALITIES[modality][2]
        unknown = [b for b in req.bands if b not in known]
        if unknown:
            raise BandMismatchError(
                f"clay with modality={modality!r} knows the bands {list(known)} (Clay's {MODALITIES[modality][0]} "
                f"metadata), not {unknown}; pick among them with bands=[...]."
            )
        return list(req.bands)

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        modality = self._modality_of(chosen, req)
        _, _, table, scale, platform_gsd, _ = MODALITIES[modality]
        return (
            ("modality", modality),
            ("scale", scale),
            ("wavelengths", tuple(table[b][1] for b in chosen)),
            ("mean", tuple(table[b][2] for b in chosen)),
            ("std", tuple(table[b][3] for b in chosen)),
            ("metadata", self._metadata(req.context)),
            ("gsd_m", float(req.context.resolution_m) if req.context is not None else platform_gsd),
        ) + self._provenance(req.context)

    @staticmethod
    def _provenance(context: InputContext | None) -> tuple[tuple[str, Any], ...]:
        """The metadata's sources as scalars (the output's ``plan_*`` attributes): date, centre."""
        if context is None:
            return (("date", "unknown"),)
        lon, lat = context.center_lonlat
        date = context.times[0] if context.times else "unknown (time encoded as zeros)"
        return (("date", date), ("latitude", float(lat)), ("longitude", float(lon)))

    def _metadata(self, context: InputContext | None) -> tuple[float, ...]:
        """``(week sin, cos, hour sin, cos, lat sin, cos, lon sin, cos)`` from the raster's metadata."""
        if context is None:
            return (0.0,) * 8
        times = context.times
        if times is not None and len(times) > 1:
            raise OptionError(
                f"clay embeds one acquisition at a time (its time encoding is one date), but the input has "
                f"{len(times)} time steps. Embed each one on its own, e.g. "
                "`xr.concat([da.isel(time=[i]).rsembed.embed('clay') for i in range(da.sizes['time'])], 'time')`."
            )
        lon, lat = context.center_lonlat
        return time_code(times[0] if times else None) + latlon_code(lon, lat)

    def describe_extra(self) -> dict[str, Any]:
        return {
            "wavelengths_um": [S2_METADATA[b][1] for b in S2_BANDS],
            "modalities": {
                name: {
                    "bands": list(bands), "values": values, "clay_platform": platform,
                    "wavelengths_um": [table[b][1] for b in bands], "platform_gsd_m": gsd,
                }
                for name, (platform, bands, table, _, gsd, values) in MODALITIES.items()
            },
            "default_modality": "s2",
            "metadata": {
                "gsd": "the raster's pixel size in metres",
                "latlon": "the raster centre (every tile), (sin, cos) of latitude and of longitude",
                "time": "the input's datetime 'time' coordinate (one step): (sin, cos) of ISO week * 2 pi / 52 and "
                "of hour * 2 pi / 24 (dates are read at day precision: hour 0); no time coordinate: zeros",
                "several time steps": "refused (embed each on its own)",
            },
            "dim_head": self.dim_head,
            "mlp_ratio": self.mlp_ratio,
            "statistics_source": METADATA_SOURCE,
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .clay_net import ClayEncoder

        v = self.variant
        return ClayEncoder(v.embed_dim, v.depth, v.num_heads, self.dim_head, self.mlp_ratio, v.patch_size)

    def clean_state_dict(self, state_dict):
        """Keep the Lightning checkpoint's ``encoder.*`` (after the ``model.`` wrapper prefix is stripped) without
        the prefix; drop ``decoder.*``, ``teacher.*`` (the distillation teacher), ``proj.*`` (its projection) and
        ``mrl.*`` (Matryoshka heads of earlier releases). Any other key is kept, so the strict load refuses it."""
        cleaned = {}
        for key, value in state_dict.items():
            if key.startswith(("decoder.", "teacher.", "proj.", "mrl.")):
                continue
            cleaned[key[len("encoder."):] if key.startswith("encoder.") else key] = value
        return cleaned

    # -- run time ----------------------------------------------------------------------------
    def check_values(self, pixels, plan: InputPlan) -> None:
        who = f"clay (modality={plan.option('modality')!r})"
        if plan.option("scale") == "db":
            check_db_backscatter(pixels, who)
        else:
            check_raw_reflectance(pixels, who, what="Sentinel-2 L2A reflectance")

    def normalise(self, pixels, plan):
        """``(x - mean) / std`` per band (Clay's platform statistics); NaN stays NaN."""
        import torch

        mean = torch.tensor(plan.option("mean"), dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
        std = torch.tensor(plan.option("std"), dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
        return (pixels - mean) / std

    def _inputs(self, x, plan):
        import torch

        waves = torch.tensor(plan.option("wavelengths"), dtype=torch.float32, device=x.device)
        metadata = torch.tensor(plan.option("metadata"), dtype=torch.float32, device=x.device).expand(x.shape[0], -1)
        gsd = torch.tensor(plan.option("gsd_m"), dtype=torch.float32)
        return waves, metadata, gsd

    def forward_grid(self, module, x, plan):
        return module.grid(x, *self._inputs(x, plan))

    def forward_pooled(self, module, x, plan):
        return module(x, *self._inputs(x, plan))
