"""Galileo (NASA Harvest): channel-group tokens of Sentinel-2 / Sentinel-1 time series, months and location.

Reference: Tseng et al., *Galileo* (arXiv 2502.09356; "Learning Global and Local Features in Pretrained
Remote Sensing Models"); code github.com/nasaharvest/galileo (MIT), its ``single_file_galileo.py``
being the parity reference (GitHub-only: ``scripts/goldens_galileo.py`` ran it once into
``tests/goldens/galileo/``); weights ``nasaharvest/galileo`` on the Hugging Face Hub (``models/<size>/``
``encoder.pt`` + ``config.json``; the nano files also in the GitHub repository's ``data/models/nano``).

Choices made here, each deliberate (see ``docs/models/galileo.md``):

* **Variants** ``nano`` (D=128, 4 blocks), ``tiny`` (D=192, 12 blocks), ``base`` (D=768, 12 blocks, the
  default: the largest released size and, as for every other family here, the base size).
* **Modalities.** ``"s2"`` (default) reads Galileo's 10 Sentinel-2 bands ``B02 B03 B04 B05 B06 B07 B08
  B8A B11 B12`` (its pre-training data is Earth Engine ``COPERNICUS/S2_HARMONIZED``, raw 0..10000) and
  derives the NDVI group from B08 and B04, as its pre-training dataset does; ``"s1"`` reads VV, VH in dB
  (``COPERNICUS/S1_GRD``); ``"s1s2"`` both on one grid. Every other group (the other sensor, SRTM,
  Dynamic World, ERA5, ...) is masked, as the reference does for missing inputs.
* **Time.** The adapter is ``temporal``: the ``time`` dimension (1 to 24 steps, the position table's
  length) is read as one sample, each step's month (0-based, from its date) feeding the month embedding.
  Without a ``time`` dimension the raster is one time step in month 5 (June), the default month of the
  reference's ``construct_galileo_input``.
* **Place and scale.** The location token is the raster centre's (x, y, z) on the unit sphere (the
  reference's ``to_cartesian(lat, lon)``), one per raster, so every tile of a raster shares it; the
  spatial position embedding is scaled by the raster's pixel size in metres (the reference's
  ``input_resolution_m``; 10 m gives its default). In resize mode it is still the input's pixel size, not
  the resampled image's.
* **Normalisation** is the pre-training ``Normalizer(std=True, std_multiplier=2)`` with
  ``config/normalization.json``: ``(x - (mean - 2 std)) / (4 std)`` per band; NDVI and the location pass
  unchanged. (The reference's ``construct_galileo_input(normalize=True)`` looks the statistics up with
  string keys and so silently skips them; the training and evaluation code, followed here, do not.)
  Invalid pixels are 0 after normalising and their cells NaN in the output.
* **Grid output** is, per 8 x 8 px patch, the mean of the patch's tokens over time steps and groups and
  the location token (the reference's ``apply_mask_and_average_tokens_per_patch``); **pooled output** is
  the mean of all unmasked tokens (the reference's ``average_tokens``). In tile mode the pooled vector is
  the valid-pixel-weighted mean of the grid cells, which counts the location token once per cell rather
  than once in all.
* **Tiles** are 12 x 12 patches, the largest extent of Galileo's pre-training samples: 96 px at the
  release's native 8 px patches, 48 px for the ``-p4`` variants, which run the same weights on 4 px patches
  with the kernels resampled as the reference's FlexiPatchEmbed does (pseudo-inverse of bicubic, antialiased
  resizing). Other patch sizes (1 .. 7) are not registered.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from ..errors import BandMismatchError, OptionError
from .base import BandRequest, Checkpoint, InputContext, InputPlan, ModelAdapter, Variant
from .band_sets import S1_BANDS
from .checks import check_db_backscatter, check_raw_reflectance
from .sensors import S1_DB_SENSOR, S2_TOA, SensorSpec

#: Galileo's Sentinel-2 bands in its order (B01, B09 and B10 are not used).
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
#: Both sensors on one grid: the radar bands, then the optical ones (Galileo's SPACE_TIME_BANDS order).
S1S2_BANDS = S1_BANDS + S2_BANDS
#: xrembed band name -> the release's spelling.
RELEASE_NAMES = {"B02": "B2", "B03": "B3", "B04": "B4", "B05": "B5", "B06": "B6", "B07": "B7", "B08": "B8",
                 "B8A": "B8A", "B11": "B11", "B12": "B12", "VV": "VV", "VH": "VH"}
#: Pre-training statistics (``config/normalization.json``, key ``"13"``) per band.
BAND_MEAN = {
    "VV": -11.728724389184965, "VH": -18.85558188024017, "B02": 1395.3408730676722, "B03": 1338.4026921784578,
    "B04": 1343.09883810357, "B05": 1543.8607982512297, "B06": 2186.2022069512263, "B07": 2525.0932853316694,
    "B08": 2410.3377187373408, "B8A": 2750.2854646886753, "B11": 2234.911100061487, "B12": 1474.5311266077113,
}
BAND_STD = {
    "VV": 4.887145774840316, "VH": 5.730270320384293, "B02": 917.7041440370853, "B03": 913.2988423581528,
    "B04": 1092.678723527555, "B05": 1047.2206083460424, "B06": 1048.0101611156767, "B07": 1143.6903026819996,
    "B08": 1098.979177731649, "B8A": 1204.472755085893, "B11": 1145.9774063078878, "B12": 980.2429840007796,
}
#: Half-width of the Normalizer's window, in standard deviations (its ``std_multiplier``).
STD_MULTIPLIER = 2.0
#: The month (0-based) of a raster without a ``time`` dimension: June, the reference's ``DEFAULT_MONTH``.
DEFAULT_MONTH = 5
#: Time steps the position-in-time table covers (``max_sequence_length``).
MAX_FRAMES = 24

#: modality -> (bands, value scale, derives NDVI, what the values are)
MODALITIES: dict[str, tuple[tuple[str, ...], str, bool, str]] = {
    "s2": (S2_BANDS, "reflectance", True, "Sentinel-2 reflectance, raw 0..10000 (pre-trained on L1C TOA; L2A works)"),
    "s1": (S1_BANDS, "db", False, "Sentinel-1 GRD backscatter in dB (Earth Engine COPERNICUS/S1_GRD)"),
    "s1s2": (S1S2_BANDS, "joint", True, "VV, VH in dB and the 10 Sentinel-2 bands as raw reflectance, on one grid"),
}
_MODALITY_SPELLINGS = {"optical": "s2", "s2_l2a": "s2", "l2a": "s2", "s2_l1c": "s2", "l1c": "s2", "sar": "s1",
                       "joint": "s1s2", "both": "s1s2", "s1+s2": "s1s2", "s2s1": "s1s2"}

_HF_REPO = "nasaharvest/galileo"


#: Kernel size of the release's patch embeddings (``max_patch_size``): the default patch size.
KERNEL_PATCH = 8
#: Tokens per tile side at every patch size (96 px at patch 8, 48 px at patch 4).
TILE_TOKENS = 12


def _variant(name: str, size: str, dim: int, depth: int, heads: int, patch: int = KERNEL_PATCH) -> Variant:
    return Variant(
        name=name, embed_dim=dim, depth=depth, num_heads=heads, patch_size=patch, image_size=TILE_TOKENS * patch,
        checkpoint=Checkpoint(repo_id=_HF_REPO, filename=f"models/{size}/encoder.pt"),
        extra=(("mlp_ratio", 4.0), ("max_sequence_length", MAX_FRAMES), ("max_patch_size", KERNEL_PATCH)),
    )


def release_config(adapter: Galileo) -> dict:
    """The release's ``config.json`` for ``adapter``'s variant: what the reference's ``load_from_folder`` reads."""
    v = adapter.variant
    extra = dict(v.extra)
    return {"model": {"encoder": {
        "embedding_size": v.embed_dim, "depth": v.depth, "num_heads": v.num_heads, "mlp_ratio": extra["mlp_ratio"],
        "max_sequence_length": extra["max_sequence_length"], "freeze_projections": False, "drop_path": 0.1,
        "max_patch_size": int(extra.get("max_patch_size", v.patch_size)),
    }}}


def write_config(adapter: Galileo, encoder_path) -> str:
    """Write ``config.json`` beside ``encoder_path`` (test checkpoints); returns its path."""
    import json
    from pathlib import Path

    path = Path(encoder_path).with_name("config.json")
    path.write_text(json.dumps(release_config(adapter), indent=1))
    return str(path)


def to_cartesian(lon: float, lat: float) -> tuple[float, float, float]:
    """(x, y, z) on the unit sphere of ``lon``, ``lat`` in degrees: the reference's ``to_cartesian(lat, lon)``.

    Examples
    --------
    >>> [round(v, 6) for v in to_cartesian(90.0, 0.0)]
    [0.0, 1.0, 0.0]
    """
    phi, lam = math.radians(lat), math.radians(lon)
    return math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)


def month_of(iso: str) -> int:
    """0-based month of an ISO date (January is 0), as Galileo's month embedding wants.

    Examples
    --------
    >>> month_of("2020-02-19"), month_of("2020-12-31T10:00")
    (1, 11)
    """
    return _dt.date.fromisoformat(iso[:10]).month - 1


class Galileo(ModelAdapter):
    model_id = "galileo"
    title = "Galileo: channel-group transformer for Sentinel-2 / Sentinel-1 time series (NASA Harvest)"
    variants = {
        "nano": _variant("nano", "nano", 128, 4, 8),
        "tiny": _variant("tiny", "tiny", 192, 12, 3),
        "base": _variant("base", "base", 768, 12, 12),
        # the same weights on 4 x 4 px patches (the kernels resampled as the release's patch_size=4 does)
        "nano-p4": _variant("nano-p4", "nano", 128, 4, 8, patch=4),
        "tiny-p4": _variant("tiny-p4", "tiny", 192, 12, 3, patch=4),
        "base-p4": _variant("base-p4", "base", 768, 12, 12, patch=4),
    }
    default_variant = "base"
    sensors = {
        "s2": SensorSpec(S2_TOA, ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"), scale_m=10,
                         modality="s2"),
        "s1": S1_DB_SENSOR,
    }
    reference = "github.com/nasaharvest/galileo single_file_galileo.py (MIT), through scripts/goldens_galileo.py"
    licence = (
        "code: MIT (nasaharvest/galileo LICENSE); weights: published by the authors in that MIT-licensed repository "
        "(nano, data/models/nano) and on hf nasaharvest/galileo, no separate weights licence found; the model "
        "card could not be checked offline [unverified]"
    )
    #: Tiles of another size (``tile_size=``): nothing to resample.
    other_tile_sizes = (
        "native: the spatial sin-cos embedding is computed for the tile's patch grid, as the reference's "
        "get_2d_sincos_pos_embed_with_resolution does for any square grid (Galileo stores no position table for space)"
    )
    outputs = {
        "grid": "per 8 x 8 px patch, the mean of its normed tokens over time steps and channel groups plus the "
        "location token (reference: Encoder.apply_mask_and_average_tokens_per_patch)",
        "pooled": "resize mode: the mean of all unmasked normed tokens (reference: Encoder.average_tokens); tile "
        "mode: the valid-pixel-weighted mean of the grid cells (the location token then counts once per cell)",
    }
    temporal = True
    default_bands = S2_BANDS
    band_order = ("model order: " + ",".join(S2_BANDS) + " (s2, plus NDVI derived from B08, B04); VV,VH (s1); "
                  "VV,VH then the 10 optical bands (s1s2); picked by name")
    lists_wavelengths = True
    input_values = (
        "s2: raw Sentinel-2 reflectance 0..10000 (already-normalised [0, 1] rejected); s1: backscatter in dB "
        "(linear power rejected); s1s2: both, on one grid"
    )
    normalisation = {
        "every band": "x' = (x - (mean - 2 std)) / (4 std) (pre-training Normalizer(std=True, std_multiplier=2))",
        "mean": dict(BAND_MEAN),
        "std": dict(BAND_STD),
        "NDVI": "(B08 - B04) / (B08 + B04) from the raw bands (0 where the sum is not positive), not normalised",
        "location": "(x, y, z) = (cos lat cos lon, cos lat sin lon, sin lat) of the raster centre, not normalised",
        "invalid pixels": "0 after normalising; their cells are NaN in the output",
    }

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    band_sets = {name: spec[0] for name, spec in MODALITIES.items()}
    no_wavelengths_message = (
        "galileo reads fixed bands and takes no wavelengths=; it reads its 10 Sentinel-2 bands, VV/VH, or both "
        "(modality='s1s2') by name. Drop wavelengths= and name the bands."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=[...] in the input's order "
        "(galileo with modality={modality!r} needs {wanted})."
    )
    missing_message = (
        "galileo with modality={modality!r} needs bands {wanted}; the input lacks {missing} (it has {available}). "
        "Add the missing bands or choose another modality= ('s2', 's1' or 's1s2')."
    )
    bands_reorder_only = True  # bands= names exactly the modality's bands, in any order
    modality_names = tuple(MODALITIES)
    modality_spellings = _MODALITY_SPELLINGS
    default_modality, sar_modality = "s2", "s1"
    modality_message = (
        "{model} takes modality='s2' (10 Sentinel-2 bands, the default), 's1' (Sentinel-1 VV/VH in dB) "
        "or 's1s2' (both on one grid), not {modality!r}."
    )
    exact_bands_message = (
        "{model} with modality={modality!r} reads exactly {count} bands {wanted}, but bands= names {given}: "
        "{bands}. Pass bands={wanted} (any order; they are fed in the model order), or choose another modality=."
    )

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        _, scale, ndvi, _ = MODALITIES[req.modality]
        context = req.context
        location = to_cartesian(*context.center_lonlat) if context is not None else None
        resolution = float(context.resolution_m) if context is not None and context.resolution_m else 10.0
        months = self._months(context)
        # Scalars recorded in the output's attrs (plan_*): which months and place the model was given.
        provenance = (("month_ids", ",".join(map(str, months)) if months else f"{DEFAULT_MONTH} (no dates: June)"),)
        if context is not None:
            lon, lat = context.center_lonlat
            provenance += (("center_lon", float(lon)), ("center_lat", float(lat)))
        return (
            ("modality", req.modality),
            ("scale", scale),
            ("ndvi", ndvi),
            ("months", months),
            ("location", location),
            ("input_resolution_m", resolution),
        ) + provenance

    def _months(self, context: InputContext | None) -> tuple[int, ...] | None:
        """0-based months of the time steps; ``None`` without dates (then one step in ``DEFAULT_MONTH``)."""
        times = context.times if context is not None else None
        if not times:
            return None
        if len(times) > MAX_FRAMES:
            raise OptionError(
                f"galileo reads at most {MAX_FRAMES} time steps as one sample, the input has {len(times)}: select "
                f"fewer, e.g. `da.isel(time=slice(0, {MAX_FRAMES}))`, or embed groups of time steps separately."
            )
        return tuple(month_of(t) for t in times)

    def describe_extra(self) -> dict[str, Any]:
        return {
            "modalities": {
                name: {"bands": list(bands), "values": values, "derived": ["NDVI"] if ndvi else []}
                for name, (bands, _, ndvi, values) in MODALITIES.items() if name != "s1s2"
            },
            "joint_modality": {"s1s2": {"bands": list(S1S2_BANDS), "values": MODALITIES["s1s2"][3],
                                        "derived": ["NDVI"], "reads": ["s1", "s2"]}},
            "default_modality": "s2",
            "temporal": {
                "time_steps": f"1..{MAX_FRAMES} (the input's 'time' dimension, read as one sample)",
                "date_encoding": "0-based month of each time step (January = 0)",
                "without_time": f"one time step in month {DEFAULT_MONTH} (June), the reference's default",
            },
            "location": "the raster centre's (x, y, z) on the unit sphere, one token per raster",
            "input_resolution": "the raster's pixel size in metres scales the spatial position embedding (in "
            "resize mode the input's, not the resampled image's)",
            "patch_sizes": "8 px (the release's kernels; variants without a suffix, 96 px tiles) or 4 px (the '-p4' "
            "variants, same weights, kernels resampled by FlexiViT's pseudo-inverse resize as the reference's "
            "patch_size=4 does; 48 px tiles); 12 x 12 tokens per tile either way",
            "masked_groups": "SRTM, Dynamic World, WorldCereal, ERA5, TerraClimate, VIIRS, LandScan, and the "
            "sensor not read",
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        from .galileo_net import GalileoEncoder

        v = self.variant
        extra = dict(v.extra)
        return GalileoEncoder(v.embed_dim, v.depth, v.num_heads, mlp_ratio=float(extra["mlp_ratio"]),
                              max_sequence_length=int(extra["max_sequence_length"]),
                              max_patch_size=int(extra.get("max_patch_size", v.patch_size)))

    def clean_state_dict(self, state_dict):
        """Drop the ``.backbone`` some release keys carry (the reference loader's own clean-up); any other
        missing, extra or misshapen key is refused by the strict load."""
        return {key.replace(".backbone", ""): value for key, value in state_dict.items()}

    # -- run time ----------------------------------------------------------------------------
    def check_values(self, pixels, plan: InputPlan) -> None:
        scale = plan.option("scale")
        who = f"galileo (modality={plan.option('modality')!r})"
        frames = pixels.reshape(pixels.shape[0], -1, len(plan.bands), *pixels.shape[2:])
        radar = len(S1_BANDS) if scale in ("db", "joint") else 0  # radar bands come first
        if scale in ("db", "joint"):
            check_db_backscatter(frames[:, :, :radar], who)
        if scale in ("reflectance", "joint"):
            check_raw_reflectance(frames[:, :, radar:], who)

    def normalise(self, pixels, plan):
        """Per frame (frame-major channels): the bands normalised, then NDVI from the raw B08, B04 (s2, s1s2)."""
        import torch

        bands = plan.bands
        b, channels, h, w = pixels.shape
        frames = channels // len(bands)
        x = pixels.reshape(b, frames, len(bands), h, w)
        shift = torch.tensor([BAND_MEAN[n] - STD_MULTIPLIER * BAND_STD[n] for n in bands], dtype=torch.float64)
        div = torch.tensor([2 * STD_MULTIPLIER * BAND_STD[n] for n in bands], dtype=torch.float64)
        out = (x - shift.to(x).view(1, 1, -1, 1, 1)) / div.to(x).view(1, 1, -1, 1, 1)
        if plan.option("ndvi"):
            nir, red = x[:, :, bands.index("B08")], x[:, :, bands.index("B04")]
            total = nir + red
            ndvi = torch.where(total > 0, (nir - red) / torch.where(total > 0, total, torch.ones_like(total)), 0.0)
            ndvi = torch.where(torch.isnan(total), total, ndvi)  # NaN stays NaN (0 after prepare, cell NaN)
            out = torch.cat([out, ndvi[:, :, None]], dim=2)
        return out.reshape(b, -1, h, w)

    def _encode(self, module, x, plan):
        """``(tokens (B, T, G, h, w, D), location token (B, D) or None)`` for normalised ``x``."""
        import torch

        from .galileo_net import SPACE_TIME_GROUPS

        names = list(plan.bands) + (["NDVI"] if plan.option("ndvi") else [])
        b, channels, h, w = x.shape
        months = plan.option("months")
        frames = channels // len(names)
        if months is None:
            if frames != 1:
                raise BandMismatchError(
                    f"galileo got {frames} time steps but no dates for them: give the input a datetime 'time' "
                    "coordinate (each step's month feeds the model), e.g. `da.assign_coords(time=dates)`."
                )
            months = (DEFAULT_MONTH,)
        if channels != len(months) * len(names):
            raise BandMismatchError(
                f"galileo got {channels} channels for {len(months)} time steps of {len(names)} bands {names}; "
                "give the input one date per time step."
            )
        x = x.reshape(b, frames, len(names), h, w)
        release = [RELEASE_NAMES.get(n, n) for n in names]
        groups = {}
        for group, members in SPACE_TIME_GROUPS.items():
            if all(m in release for m in members):
                groups[group] = x[:, :, [release.index(m) for m in members]]
        month_t = torch.tensor(months, dtype=torch.long, device=x.device).expand(b, -1)
        location = plan.option("location")
        loc_t = None if location is None else torch.tensor(location, dtype=x.dtype, device=x.device).expand(b, -1)
        return module(groups, month_t, loc_t, input_resolution_m=plan.option("input_resolution_m", 10.0),
                      patch_size=self.variant.patch_size)

    def forward_grid(self, module, x, plan):
        tokens, static = self._encode(module, x, plan)
        b, t, g = tokens.shape[:3]
        total = tokens.sum(dim=(1, 2))  # (B, h, w, D)
        count = t * g
        if static is not None:
            total, count = total + static[:, None, None], count + 1
        return (total / count).permute(0, 3, 1, 2)

    def forward_pooled(self, module, x, plan):
        tokens, static = self._encode(module, x, plan)
        total = tokens.sum(dim=(1, 2, 3, 4))
        count = tokens[0, ..., 0].numel()
        if static is not None:
            total, count = total + static, count + 1
        return total / count
