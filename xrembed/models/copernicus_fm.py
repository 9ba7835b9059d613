"""Copernicus-FM: one ViT for any spectral bands, its patch kernels generated from wavelength and bandwidth,
with the image's location, date and patch area as metadata tokens.

Reference: Wang et al., *Towards a Unified Copernicus Foundation Model for Earth Vision* (ICCV 2025,
arXiv 2503.11849); code github.com/zhu-xlab/Copernicus-FM (Apache-2.0, with MIT parts from DOFA, Aurora
and FlexiViT) and torchgeo ``torchgeo.models.copernicusfm`` (MIT), the runnable reference of the parity
tests; weights ``CopernicusFM_ViT_base_varlang_e100.pth`` (hf ``wangyi111/Copernicus-FM``, CC-BY-4.0 per
the authors' README), mirrored by torchgeo (hf ``torchgeo/copernicus-fm``).

Choices made here, each deliberate (see ``docs/models/copernicus_fm.md``):

* **Band table** is the authors' own: central wavelength and bandwidth in nm per band
  (``Copernicus-FM/src/engine_pretrain.py``, ``WV`` / ``BW``) and the pre-training mean/std
  (``Copernicus-FM/src/main_pretrain.py``, ``S2C_MEAN`` / ``S2C_STD``, ``S1_MEAN`` / ``S1_STD``), at
  commit ``da95635d76a1feef3006eba474f6175325b4037b`` of zhu-xlab/Copernicus-FM.
* **Sentinel-2** (default; L1C or L2A, raw 0..10000) reads the 13 bands of the pre-training (``s2_toa``)
  when the input has B10, else the 12 others (L2A has no B10; Copernicus-Bench's BigEarthNet-S2 config
  does the same). ``bands=`` may pick any subset of the 13 (the hypernetwork takes any spectral stack).
  **Sentinel-1** (``modality="s1"``, the default for VV/VH-only input) reads VV, VH in dB; the authors give
  both polarisations the same wavelength (5e7 nm) and bandwidth (1e9 nm), so the model sees them only
  through their statistics.
* **Normalisation** is the pre-training one: ``(x - mean) / std`` per band on raw values (reflectance DN,
  or dB), invalid pixels set to 0 afterwards (the pre-training's ``RemoveOutlier``).
* **Metadata**, decided from the raster's metadata when ``embed()`` is called: (lon, lat) of the raster
  centre in WGS84 (one value per call, so it never depends on the chunking; tiles of a large raster share
  it); the date of the ``time`` coordinate as days since 1970-01-01 when the input has exactly one
  (several dates: the learned "unknown" time token, with a warning); the area of one 16 x 16 px patch in
  km2 from the pixel size. Unknown metadata uses the learned fallback tokens, as the reference does.
* **Grid output** is the last block's patch tokens (no final norm), the tokens the reference's global-pool
  head averages; **pooled output** is that head, ``fc_norm(mean of patch tokens)`` with ``fc_norm`` at its
  default init (it is not in the release, as torchgeo's loader states). In tile mode the head is applied to
  the valid-pixel-weighted mean of the grid tokens.
* **LayerNorm eps** is 1e-6, the authors' ``vit_base_patch16``; torchgeo's ``copernicusfm_base`` builds its
  blocks with the torch default 1e-5 (parity is tested against torchgeo with the authors' eps).
* The patch convolution keeps the reference's ``padding=1``: each token sees its patch shifted by one
  pixel up and left.
"""

from __future__ import annotations

import datetime as _dt
import math
import warnings
from dataclasses import replace
from typing import Any

from ..errors import BandMismatchError
from .base import BandRequest, Checkpoint, InputContext, ModelAdapter, Variant
from .band_sets import S1_BANDS
from .checks import check_db_backscatter, check_raw_reflectance
from .normalise import standardise
from .sensors import S1_DB_SENSOR, S2_TOA, SensorSpec

#: The authors' table, zhu-xlab/Copernicus-FM @ da95635d: band -> (wavelength nm, bandwidth nm, mean, std).
#: Wavelengths and bandwidths: Copernicus-FM/src/engine_pretrain.py (WV, BW: "s2_toa", "s1_grd");
#: statistics: Copernicus-FM/src/main_pretrain.py (S2C_MEAN/S2C_STD on raw TOA DN, S1_MEAN/S1_STD in dB).
BAND_TABLE: dict[str, tuple[float, float, float, float]] = {
    "B01": (440.0, 20.0, 1612.9, 791.0),
    "B02": (490.0, 65.0, 1397.6, 854.3),
    "B03": (560.0, 35.0, 1322.3, 878.7),
    "B04": (665.0, 30.0, 1373.1, 1144.9),
    "B05": (705.0, 15.0, 1561.0, 1127.5),
    "B06": (740.0, 15.0, 2108.4, 1164.2),
    "B07": (783.0, 20.0, 2390.7, 1276.0),
    "B08": (842.0, 115.0, 2318.7, 1249.5),
    "B8A": (860.0, 20.0, 2581.0, 1345.9),
    "B09": (940.0, 20.0, 837.7, 577.5),
    "B10": (1370.0, 30.0, 22.0, 47.5),
    "B11": (1610.0, 90.0, 2195.2, 1340.0),
    "B12": (2190.0, 180.0, 1537.4, 1142.9),
    "VV": (5e7, 1e9, -12.59, 5.26),
    "VH": (5e7, 1e9, -20.26, 5.91),
}
BAND_TABLE_SOURCE = (
    "github.com/zhu-xlab/Copernicus-FM @ da95635d76a1feef3006eba474f6175325b4037b: "
    "Copernicus-FM/src/engine_pretrain.py (WV, BW) and Copernicus-FM/src/main_pretrain.py "
    "(S2C_MEAN, S2C_STD, S1_MEAN, S1_STD)"
)

#: The pre-training's Sentinel-2 bands (L1C, ``s2_toa``), in its order.
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
#: The same without the cirrus band B10, which L2A products lack.
S2_L2A_BANDS = tuple(b for b in S2_BANDS if b != "B10")
EE_S2_13 = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")

#: Days are counted from this date (the reference's ``delta_time``).
EPOCH = _dt.date(1970, 1, 1)
#: Valid ranges of the metadata the reference encodes (its Fourier expansions assert them).
AREA_RANGE_KM2 = (0.001, 5.1e8)
COORD_RANGE = (0.0001, 720.0)

_HF_REPO = "torchgeo/copernicus-fm"


class CopernicusMetadataWarning(UserWarning):
    """Metadata the model would encode is unusable, so its learned "unknown" token is used instead."""


class CopernicusFM(ModelAdapter):
    model_id = "copernicus_fm"
    aliases = ("copernicus-fm", "copernicusfm")
    title = "Copernicus-FM: wavelength/bandwidth hypernetwork ViT with location, date and area metadata"
    variants = {
        "base": Variant(
            name="base", embed_dim=768, depth=12, num_heads=12, patch_size=16, image_size=224,
            checkpoint=Checkpoint(repo_id=_HF_REPO, filename="CopernicusFM_ViT_base_varlang-085350e4.pth",
                                  revision="f395812cc990ba25a451dbb9c9e6d95c8482947e"),
        ),
    }
    default_variant = "base"
    sensors = {
        # pre-trained on Sentinel-2 L1C (top of atmosphere, 13 bands) and Sentinel-1 GRD in dB
        "s2": SensorSpec(S2_TOA, EE_S2_13, scale_m=10, modality="s2"),
        "s1": S1_DB_SENSOR,
    }
    reference = (
        "torchgeo.models.copernicusfm (torchgeo 0.8.1, MIT; after github.com/zhu-xlab/Copernicus-FM, Apache-2.0)"
    )
    licence = (
        "code: Apache-2.0 (zhu-xlab/Copernicus-FM; parts MIT from DOFA, Aurora, FlexiViT; its MAE-derived "
        "pre-training scripts CC-BY-NC-4.0), torchgeo's port MIT; weights: CC-BY-4.0 per the authors' README "
        "(zhu-xlab/Copernicus-FM @ da95635d); torchgeo's weight enum states none; the Hugging Face model card "
        "was not checked offline [unverified]"
    )
    #: Tiles of another size (``tile_size=``): see :mod:`xrembed.models.pos_embed`.
    other_tile_sizes = (
        "the stored pos_embed table resampled to the tile's patch grid (bicubic, antialiased, CLS row kept), as "
        "the reference's own resize_abs_pos_embed does for any input size; the patch area metadata is per patch"
    )
    outputs = {
        "grid": "last-block patch tokens (no final norm), one per 16 x 16 px patch",
        "pooled": "fc_norm(mean of patch tokens), the reference's global-pool output (fc_norm at its default init, "
        "not in the release); in tile mode the mean is weighted by each cell's valid pixel count",
    }
    default_bands = S2_BANDS
    band_order = (
        "model order: " + ",".join(S2_BANDS) + " (s2; B10 only when the input has it, so L2A reads 12 bands); "
        "VV,VH (s1); bands= picks any subset of these, fed in the order given"
    )
    input_values = (
        "s2: raw Sentinel-2 reflectance 0..10000, L1C or L2A (already-normalised [0, 1] rejected); s1: backscatter "
        "in dB (linear power rejected)"
    )
    normalisation = {
        "every band": "(x - mean) / std on raw values (reflectance DN, or dB), the pre-training's; invalid pixels 0",
        "mean": {b: row[2] for b, row in BAND_TABLE.items()},
        "std": {b: row[3] for b, row in BAND_TABLE.items()},
        "source": BAND_TABLE_SOURCE,
    }
    value_checks = {"reflectance": check_raw_reflectance, "db": check_db_backscatter}

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    band_sets = {"s2": S2_L2A_BANDS, "s2_l1c": S2_BANDS, "s1": S1_BANDS}
    # named modalities (the base's policy: any case, these spellings; VV/VH alone mean Sentinel-1)
    modality_names = ("s2", "s2_l1c", "s1")
    modality_spellings = {"optical": "s2", "s2_l2a": "s2", "l2a": "s2", "sentinel2": "s2", "l1c": "s2_l1c",
                          "sar": "s1", "sentinel1": "s1"}
    default_modality = "s2"
    sar_modality = "s1"
    modality_message = (
        "copernicus_fm takes modality='s2' (Sentinel-2, the default; 's2_l1c' to require all 13 bands) or 's1' "
        "(Sentinel-1 VV/VH in dB), not {modality!r}."
    )
    no_wavelengths_message = (
        "copernicus_fm generates its patch kernels from each band's wavelength *and* bandwidth, which it knows for "
        "the Sentinel-2 bands B01..B12, B8A and Sentinel-1 VV/VH; it takes no wavelengths=. Drop wavelengths= and "
        "name the bands."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=[...] in the input's order (copernicus_fm knows "
        "the Sentinel-2 bands B01..B12, B8A and VV/VH)."
    )
    missing_message = {
        "s1": "copernicus_fm with Sentinel-1 input needs bands VV and VH; missing {missing}.",
        None: "copernicus_fm with modality={modality!r} reads bands {wanted}; the input lacks {missing} (it has "
        "{available}). Add them, or pick the bands to read with bands=[...] (any of {known}).",
    }

    def select_bands(self, req: BandRequest) -> list[str]:
        """``"s2"``: the pre-training's 13 bands when the input has B10 (L1C), else the 12 others (L2A)."""
        if req.modality == "s2" and "B10" in req.available:
            req = replace(req, modality="s2_l1c")
        return super().select_bands(req)

    def missing_text(self, req: BandRequest, wanted, missing: list[str]) -> str:
        template = self.missing_message["s1" if req.modality == "s1" else None]
        return self.say(template, modality=req.modality or "s2", wanted=list(wanted), missing=missing,
                        available=req.available, known=list(S2_BANDS))

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        self.refuse_duplicates(chosen)
        unknown = [b for b in chosen if b not in BAND_TABLE]
        if unknown:
            raise BandMismatchError(
                f"copernicus_fm knows the wavelength and bandwidth of the Sentinel-2 bands {list(S2_BANDS)} and of "
                f"VV/VH only; bands {unknown} are not among them. Pick bands=[...] from those."
            )
        sar = [b in S1_BANDS for b in chosen]
        if any(sar) and not all(sar):
            raise BandMismatchError(
                f"bands {chosen} mix Sentinel-1 (VV/VH) and Sentinel-2 bands; embed each sensor on its own."
            )
        modality = "s1" if all(sar) else "s2"
        if req.modality == "s1" and modality != "s1":
            raise BandMismatchError(f"modality='s1' needs the SAR bands VV/VH, the input gives {chosen}.")
        if req.modality in ("s2", "s2_l1c") and modality != "s2":
            raise BandMismatchError(
                f"modality={req.modality!r} needs Sentinel-2 bands, the input gives {chosen}; use modality='s1'."
            )
        rows = [BAND_TABLE[b] for b in chosen]
        lon, lat, days, area = self.metadata(req.context)
        return (
            ("modality", modality),
            ("scale", "db" if modality == "s1" else "reflectance"),
            ("wavelengths_nm", tuple(r[0] for r in rows)),
            ("wavelengths", tuple(r[0] / 1000.0 for r in rows)),  # micrometres: the output's wavelengths_um
            ("bandwidths_nm", tuple(r[1] for r in rows)),
            ("mean", tuple(r[2] for r in rows)),
            ("std", tuple(r[3] for r in rows)),
            ("lon", lon),
            ("lat", lat),
            ("time_days", days),
            ("patch_area_km2", area),
        )

    def metadata(self, context: InputContext | None) -> tuple[float | None, float | None, int | None, float | None]:
        """``(lon, lat, days since 1970-01-01, patch area in km2)`` of the input, ``None`` where unknown.

        Location: the raster centre in WGS84. Date: the input's one date (several: unknown, with a warning).
        Area: ``(patch_size * pixel size in m / 1000) ** 2``. Values outside what the reference can encode
        are unknown too (with a warning), instead of its assertion error.
        """
        if context is None:
            return None, None, None, None
        lon, lat = context.center_lonlat
        if not (_encodable(lon + 180) and _encodable(lat + 90)):
            _warn(f"the raster centre ({lon}, {lat}) is not a WGS84 longitude/latitude; the learned location token "
                  "is used.")
            lon = lat = None
        else:
            lon, lat = float(lon), float(lat)
        area = (self.variant.patch_size * float(context.resolution_m) / 1000.0) ** 2
        if not (math.isfinite(area) and AREA_RANGE_KM2[0] <= area <= AREA_RANGE_KM2[1]):
            _warn(f"a {self.variant.patch_size} px patch covers {area:.3g} km2 at {context.resolution_m:g} m pixels, "
                  f"outside the {AREA_RANGE_KM2} km2 Copernicus-FM encodes (pixels of ~2 m or finer); the learned "
                  "area token is used.")
            area = None
        dates = sorted(set(context.times)) if context.times else []
        days = None
        if len(dates) == 1:
            days = (_dt.date.fromisoformat(dates[0][:10]) - EPOCH).days
        elif len(dates) > 1:
            _warn(f"copernicus_fm encodes one acquisition date per image, but the input has {len(dates)} dates "
                  f"({dates[0]} .. {dates[-1]}) and every time step gets the same metadata; the learned 'unknown "
                  "time' token is used for all. Embed each time step on its own (`da.isel(time=[i])`) to encode "
                  "its date.")
        return lon, lat, days, area

    def describe_extra(self) -> dict[str, Any]:
        def table(bands):
            return {
                "bands": list(bands),
                "wavelengths_nm": [BAND_TABLE[b][0] for b in bands],
                "bandwidths_nm": [BAND_TABLE[b][1] for b in bands],
            }

        return {
            # the model's own wavelengths (the authors' table), not xrembed's generic Sentinel-2 ones
            "wavelengths_um": [BAND_TABLE[b][0] / 1000.0 for b in S2_BANDS],
            "modalities": {
                "s2": {**table(S2_BANDS), "values": "Sentinel-2 reflectance 0..10000 (L1C, or L2A without B10)"},
                "s1": {**table(S1_BANDS), "values": "Sentinel-1 backscatter in dB"},
            },
            "default_modality": "s2",
            "band_table_source": BAND_TABLE_SOURCE,
            "metadata": {
                "location": "(lon, lat) of the raster centre in WGS84, one per embed() call",
                "time": "days since 1970-01-01 of the input's 'time' coordinate when it holds one date; otherwise "
                "the learned 'unknown' token",
                "area": "km2 of one 16 x 16 px patch, from the pixel size",
                "unknown": "learned coord_token / scale_token / time_token, as the reference",
            },
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .copernicus_fm_net import CopernicusFMEncoder

        v = self.variant
        return CopernicusFMEncoder(v.embed_dim, v.depth, v.num_heads, v.patch_size, v.image_size)

    def clean_state_dict(self, state_dict):
        """Drop what the global-pool encoder does not use, and supply the absent ``fc_norm``.

        The release holds neither ``fc_norm.*`` nor ``head.*`` (torchgeo's loader lists both as missing);
        ``fc_norm`` is left at its default initialisation, as that loader does. A ``norm.*`` (the
        pre-training encoder's final norm, unused by the global-pool head) and a ``head.*`` are dropped if a
        file carries them; the ``{'model': ...}`` wrapper of the authors' files is removed when reading.
        Anything else missing, extra or wrongly shaped is refused by the strict load.
        """
        import torch

        cleaned = {k: v for k, v in state_dict.items() if not k.startswith(("norm.", "head."))}
        dim = self.variant.embed_dim
        cleaned.setdefault("fc_norm.weight", torch.ones(dim))
        cleaned.setdefault("fc_norm.bias", torch.zeros(dim))
        return cleaned

    # -- run time ----------------------------------------------------------------------------
    def normalise(self, pixels, plan):
        return standardise(pixels, plan.option("mean"), plan.option("std"))

    @staticmethod
    def _inputs(plan):
        meta = (plan.option("lon"), plan.option("lat"), plan.option("time_days"), plan.option("patch_area_km2"))
        return plan.option("wavelengths_nm"), plan.option("bandwidths_nm"), meta

    def forward_grid(self, module, x, plan):
        return module.grid(x, *self._inputs(plan))

    def forward_pooled(self, module, x, plan):
        return module(x, *self._inputs(plan))

    def pool_tokens(self, module, mean_tokens, plan):
        return module.pool(mean_tokens)


def _encodable(shifted: float) -> bool:
    """A shifted coordinate (lon + 180, lat + 90) the reference's expansion accepts: 0, or within its range."""
    return math.isfinite(shifted) and (shifted == 0 or COORD_RANGE[0] <= abs(shifted) <= COORD_RANGE[1])


def _warn(message: str) -> None:
    from ..errors import user_stacklevel

    warnings.warn(message, CopernicusMetadataWarning, stacklevel=user_stacklevel())
