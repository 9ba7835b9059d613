"""OlmoEarth (Ai2): a multi-modal, multi-temporal FlexiViT for Sentinel-2 L2A, Sentinel-1 and Landsat.

Reference: Ai2, *OlmoEarth: Stable Latent Image Modeling for Multimodal Earth Observation* (arXiv
2511.13655) and the v1.1 / v1.2 tech reports (variants ``nano`` .. ``large`` are v1, ``v1.1-*`` and
``v1.2-*`` the later releases; v1.3 is not registered); code PyPI ``olmoearth-pretrain-minimal`` 0.1.5
(github.com/allenai/olmoearth_pretrain_minimal), weights ``allenai/OlmoEarth-v1-*`` on the Hugging Face Hub
under the OlmoEarth Artifact License.

Choices made here, each deliberate (see ``docs/models/olmoearth.md``):

* **Runtime.** The network is the authors' own package, installed with the ``olmoearth`` extra
  (``pip install "xrembed[olmoearth]"``): it is torchvision-free (torch, einops, numpy, huggingface_hub),
  and running the authors' code leaves no port to drift from it. Without the extra, ``describe_model``
  still works and ``embed()`` raises :class:`~xrembed.errors.MissingDependencyError` naming the install
  command.
* **Modalities.** ``"s2"`` (default; ``"s2_l2a"``, ``"optical"``) reads 12 Sentinel-2 L2A bands in the
  package's order ``B02 B03 B04 B08 B05 B06 B07 B8A B11 B12 B01 B09``; ``"s1"`` (``"sar"``; the default
  when the input has only VV/VH) reads VV, VH in dB. Landsat (``"landsat"`` in the package) is not wired
  here yet: its band names (``B1`` .. ``B11``) collide with xrembed's Sentinel-2 spellings.
* **Time.** The adapter is ``temporal``: the input's ``time`` dimension (1 to 12 steps, the package's
  ``max_sequence_length``) is read as one sample, and each step's date becomes the package's timestamp
  ``(day, month - 1, year)``. OlmoEarth always encodes the month, so an input without a datetime ``time``
  coordinate is refused with the fix (``da.expand_dims(time=[...])``) rather than given a made-up date.
* **Grid output** is the encoder's patch tokens averaged over time steps and band sets (the package's
  ``pool_unmasked_tokens(MEAN, spatial_pooling=True)``), one per 8 x 8 px patch (FlexiViT patch size 8,
  the package's ``max_patch_size``). **Pooled output** is the mean of all tokens (the package's
  ``pool_instance_wise(MEAN)``); every cell holds the same number of tokens, so it equals the grid's mean
  and tile mode uses the valid-area-weighted mean of grid cells with no extra head.
* **Tiles** are 128 px (16 x 16 patches); ``input_res`` is the package's base GSD, 10 m.
* **Normalisation** is the package's ``Normalizer(std_multiplier=2)``: ``(x - (mean - 2 std)) / (4 std)``
  per band with the package's ``computed.json`` statistics (copied below; a test checks them against the
  package). Invalid pixels are set to 0 after normalising, as the package's ``NormalizerV1_1`` does for
  missing bands, and their cells are NaN in the output.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from ..errors import BandMismatchError, MissingDependencyError, OptionError
from .base import BandRequest, Checkpoint, InputContext, InputPlan, ModelAdapter, Variant
from .band_sets import S1_BANDS
from .checks import check_db_backscatter, check_raw_reflectance
from .sensors import EE_S2_12, S1_DB_SENSOR, S2_SR, SensorSpec

#: The package's Sentinel-2 L2A band order (``Modality.SENTINEL2_L2A.band_order``): 10 m, 20 m, 60 m sets.
S2_BANDS = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09")
#: The package's ``computed.json`` statistics, in band order (``sentinel2_l2a``, ``sentinel1``).
S2_MEAN = (1188.9412572078477, 1407.7739105458452, 1513.0573882432757, 2755.481305028308, 1890.9893042634167,
           2483.7812315422448, 2722.728248756412, 2885.570263047681, 2562.852607796968, 1914.1383249044113,
           1115.8494388252218, 3269.812554170875)
S2_STD = (1859.1923971769581, 1727.7387413631088, 1740.7757298757895, 1612.2565699990187, 1754.7320388511766,
          1622.1172720635755, 1621.8226170190276, 1611.3587521042082, 1441.5471830655151, 1328.8914382756407,
          1955.6991794280914, 2651.088425085525)
S1_MEAN = (-11.648990747328444, -17.745436133270044)
S1_STD = (10.840350299936597, 10.216274681392647)
#: Half-width of the Normalizer's window, in standard deviations (its ``std_multiplier``).
STD_MULTIPLIER = 2.0

#: modality -> (bands, package modality name, value scale, mean, std, what the values are)
MODALITIES: dict[str, tuple[tuple[str, ...], str, str, tuple, tuple, str]] = {
    "s2": (S2_BANDS, "sentinel2_l2a", "reflectance", S2_MEAN, S2_STD,
           "Sentinel-2 L2A surface reflectance, raw 0..10000"),
    "s1": (S1_BANDS, "sentinel1", "db", S1_MEAN, S1_STD,
           "Sentinel-1 GRD backscatter in dB (e.g. Earth Engine COPERNICUS/S1_GRD)"),
}
_MODALITY_SPELLINGS = {"optical": "s2", "s2_l2a": "s2", "l2a": "s2", "sentinel2_l2a": "s2", "sentinel2": "s2",
                       "sar": "s1", "sentinel1": "s1"}

#: Time steps the encoder reads as one sample (the package's ``max_sequence_length``).
MAX_FRAMES = 12
#: The package's base ground sample distance, in metres (``input_res``).
BASE_GSD_M = 10
#: The modalities the released encoders were trained on (the package's ``ENCODER_INPUT_MODALITY_NAMES``).
ENCODER_INPUTS = ("sentinel2_l2a", "sentinel1", "landsat")
#: Prefixes of the release file that are not the online encoder (dropped before the strict load).
DROPPED_PREFIXES = ("decoder.", "target_encoder.", "supervision_head.", "location_token_distillation_head.")

INSTALL_HINT = 'pip install "xrembed[olmoearth]"'


def _variant(name: str, size: str, version: str, dim: int, depth: int, heads: int, repo: str) -> Variant:
    return Variant(
        name=name, embed_dim=dim, depth=depth, num_heads=heads, patch_size=8, image_size=128,
        checkpoint=Checkpoint(repo_id=f"allenai/{repo}", filename="weights.pth"),
        extra=(("size", size), ("version", version), ("band_sets", 3 if version == "v1" else 1)),
    )


def olmoearth_package():
    """The ``olmoearth_pretrain_minimal`` package, or :class:`MissingDependencyError` naming the extra."""
    try:
        import olmoearth_pretrain_minimal
    except ImportError as err:
        raise MissingDependencyError(
            f"olmoearth runs the authors' package olmoearth-pretrain-minimal, which is not installed "
            f"({err}). Install it with `{INSTALL_HINT}`."
        ) from err
    return olmoearth_pretrain_minimal


def require_package() -> None:
    """Raise :class:`MissingDependencyError` (naming the extra) at ``embed()`` time if the package is absent,
    without importing it (nor torch)."""
    from importlib.util import find_spec

    try:
        found = find_spec("olmoearth_pretrain_minimal") is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        found = False
    if not found:
        olmoearth_package()


def timestamp(iso: str) -> tuple[int, int, int]:
    """OlmoEarth's timestamp of an ISO date: ``(day, month - 1, year)`` (months are zero-based)."""
    date = _dt.date.fromisoformat(iso[:10])
    return date.day, date.month - 1, date.year


class OlmoEarth(ModelAdapter):
    model_id = "olmoearth"
    aliases = ("olmoearth-v1", "olmoearth_pretrain")
    title = "OlmoEarth: multi-modal, multi-temporal FlexiViT (Sentinel-2 L2A, Sentinel-1) by Ai2"
    variants = {
        "nano": _variant("nano", "nano", "v1", 128, 4, 8, "OlmoEarth-v1-Nano"),
        "tiny": _variant("tiny", "tiny", "v1", 192, 12, 3, "OlmoEarth-v1-Tiny"),
        "base": _variant("base", "base", "v1", 768, 12, 12, "OlmoEarth-v1-Base"),
        "large": _variant("large", "large", "v1", 1024, 24, 16, "OlmoEarth-v1-Large"),
        "v1.1-nano": _variant("v1.1-nano", "nano", "v1.1", 128, 4, 8, "OlmoEarth-v1_1-Nano"),
        "v1.1-tiny": _variant("v1.1-tiny", "tiny", "v1.1", 192, 12, 3, "OlmoEarth-v1_1-Tiny"),
        "v1.1-base": _variant("v1.1-base", "base", "v1.1", 768, 12, 12, "OlmoEarth-v1_1-Base"),
        "v1.2-nano": _variant("v1.2-nano", "nano", "v1.2", 128, 4, 8, "OlmoEarth-v1_2-Nano"),
        "v1.2-tiny": _variant("v1.2-tiny", "tiny", "v1.2", 192, 12, 3, "OlmoEarth-v1_2-Tiny"),
        "v1.2-small": _variant("v1.2-small", "small", "v1.2", 384, 12, 6, "OlmoEarth-v1_2-Small"),
        "v1.2-base": _variant("v1.2-base", "base", "v1.2", 768, 12, 12, "OlmoEarth-v1_2-Base"),
    }
    default_variant = "base"
    sensors = {
        "s2": SensorSpec(S2_SR, EE_S2_12, scale_m=10, modality="s2"),
        "s1": S1_DB_SENSOR,
    }
    reference = (
        "PyPI olmoearth-pretrain-minimal 0.1.5 (github.com/allenai/olmoearth_pretrain_minimal), the runtime "
        "behind the 'olmoearth' extra and the parity reference"
    )
    licence = (
        "code: see the olmoearth-pretrain-minimal package (Ai2); weights: OlmoEarth Artifact License "
        "(github.com/allenai/olmoearth_pretrain/blob/main/LICENSE), its own terms, not an OSI licence: read them "
        "before use"
    )
    #: Tiles of another size (``tile_size=``): see :mod:`xrembed.models.pos_embed`.
    other_tile_sizes = (
        "native: the package's encoder computes its sin-cos position encodings for the tile's patch grid (nothing is interpolated)"
    )
    outputs = {
        "grid": "the encoder's patch tokens averaged over time steps and band sets (package: "
        "pool_unmasked_tokens(MEAN, spatial_pooling=True)), one per 8 x 8 px patch",
        "pooled": "the mean of all tokens (package: pool_instance_wise(MEAN)), equal to the grid's mean; in tile "
        "mode the mean is weighted by each cell's valid pixel count",
    }
    temporal = True
    default_bands = S2_BANDS
    band_order = ("model order: " + ",".join(S2_BANDS) + " (s2, the package's 10 m / 20 m / 60 m band sets); "
                  "VV,VH (s1); picked by name")
    lists_wavelengths = True
    input_values = (
        "s2: raw Sentinel-2 L2A reflectance 0..10000 (already-normalised [0, 1] rejected); s1: backscatter in dB "
        "(linear power rejected)"
    )
    normalisation = {
        "every band": "x' = (x - (mean - 2 std)) / (4 std) (the package's Normalizer, std_multiplier=2)",
        "s2 mean": dict(zip(S2_BANDS, S2_MEAN)),
        "s2 std": dict(zip(S2_BANDS, S2_STD)),
        "s1 mean": dict(zip(S1_BANDS, S1_MEAN)),
        "s1 std": dict(zip(S1_BANDS, S1_STD)),
        "invalid pixels": "0 after normalising (the package's NormalizerV1_1 for missing values); their cells "
        "are NaN in the output",
    }

    @property
    def size(self) -> str:
        return str(dict(self.variant.extra)["size"])

    @property
    def version(self) -> str:
        return str(dict(self.variant.extra)["version"])

    # -- contract (plan_inputs is the base's, from this data and the hooks below) ----------------
    band_sets = {name: spec[0] for name, spec in MODALITIES.items()}
    no_wavelengths_message = (
        "olmoearth reads fixed bands and takes no wavelengths=; it reads the 12 Sentinel-2 L2A bands or VV/VH "
        "by name. Drop wavelengths= and name the bands."
    )
    unnamed_message = (
        "the input's bands are not named; name them with bands=[...] in the input's order "
        "(olmoearth with modality={modality!r} needs {wanted})."
    )
    missing_message = (
        "olmoearth with modality={modality!r} needs bands {wanted}; the input lacks {missing} (it has "
        "{available}). Add the missing bands or choose another modality= ('s2' or 's1')."
    )

    bands_reorder_only = True  # bands= names exactly the modality's bands, in any order
    modality_names = tuple(MODALITIES)
    modality_spellings = _MODALITY_SPELLINGS
    default_modality, sar_modality = "s2", "s1"
    modality_message = (
        "{model} takes modality='s2' (12 Sentinel-2 L2A bands, the default) or 's1' (Sentinel-1 VV/VH "
        "in dB), not {modality!r}{hint}."
    )
    exact_bands_message = (
        "{model} with modality={modality!r} reads exactly {count} bands {wanted}, but bands= names {given}: "
        "{bands}. Pass bands={wanted} (any order; they are fed in the model order), or choose another modality=."
    )

    def modality_refusal(self, modality: Any) -> str:
        hint = " (Landsat is not supported by xrembed's adapter yet)" if str(modality).strip().lower() == "landsat" else ""
        return self.say(self.modality_message, modality=modality, hint=hint)

    def plan_options(self, chosen: list[str], req: BandRequest) -> tuple[tuple[str, Any], ...]:
        _, _, scale, mean, std, _ = MODALITIES[req.modality]
        require_package()
        return (
            ("modality", req.modality),
            ("scale", scale),
            ("timestamps", self._timestamps(req.context)),
            ("mean", mean),
            ("std", std),
        )

    def _timestamps(self, context: InputContext | None) -> tuple[tuple[int, int, int], ...]:
        times = context.times if context is not None else None
        name = f"{self.model_id}/{self.variant.name}"
        if not times:
            raise OptionError(
                f"{name} encodes the month of each time step, but the input has no datetime 'time' dimension. "
                "Add one with the acquisition date, e.g. `da.expand_dims(time=[np.datetime64('2020-06-15')])`."
            )
        if len(times) > MAX_FRAMES:
            raise OptionError(
                f"{name} reads at most {MAX_FRAMES} time steps as one sample, the input has {len(times)}: select "
                f"fewer, e.g. `da.isel(time=slice(0, {MAX_FRAMES}))`, or embed groups of time steps separately."
            )
        return tuple(timestamp(t) for t in times)

    def describe_extra(self) -> dict[str, Any]:
        return {
            "modalities": {
                name: {"bands": list(bands), "values": values, "package_modality": package}
                for name, (bands, package, _, _, _, values) in MODALITIES.items()
            },
            "default_modality": "s2",
            "version": self.version,
            "band_sets": int(dict(self.variant.extra)["band_sets"]),
            "temporal": {
                "time_steps": f"1..{MAX_FRAMES} (the input's datetime 'time' dimension, read as one sample)",
                "date_encoding": "(day, month - 1, year) of each time step",
                "requires_time_coordinate": True,
            },
            "input_res_m": BASE_GSD_M,
            "runtime": f"olmoearth-pretrain-minimal ({INSTALL_HINT})",
        }

    # -- weights -----------------------------------------------------------------------------
    def build_module(self):
        """The online encoder of the package's ``OlmoEarthPretrain_v1(size, version)``, restricted to the
        modalities the release was trained to encode."""
        package = olmoearth_package()
        encoder = package.OlmoEarthPretrain_v1(self.size, self.version).model.encoder
        encoder.restrict_input_modalities(list(ENCODER_INPUTS))
        return encoder

    def clean_state_dict(self, state_dict):
        """Keep the release's ``encoder.*`` keys without the prefix; drop ``decoder.*``, ``target_encoder.*``
        and the training-only heads. Any other key is kept, so the strict load refuses it."""
        cleaned = {}
        for key, value in state_dict.items():
            if key.startswith(DROPPED_PREFIXES):
                continue
            cleaned[key[len("encoder."):] if key.startswith("encoder.") else key] = value
        return cleaned

    # -- run time ----------------------------------------------------------------------------
    def check_values(self, pixels, plan: InputPlan) -> None:
        who = f"olmoearth (modality={plan.option('modality')!r})"
        if plan.option("scale") == "db":
            check_db_backscatter(pixels, who)
        else:
            check_raw_reflectance(pixels, who, what="Sentinel-2 L2A reflectance")

    def normalise(self, pixels, plan):
        """The package's Normalizer per band of each frame (frame-major channels); NaN stays NaN."""
        import torch

        mean, std = plan.option("mean"), plan.option("std")
        frames = pixels.shape[1] // len(mean)
        low = torch.tensor([m - STD_MULTIPLIER * s for m, s in zip(mean, std)], dtype=torch.float64)
        width = torch.tensor([2 * STD_MULTIPLIER * s for s in std], dtype=torch.float64)
        low = low.repeat(frames).to(pixels).view(1, -1, 1, 1)
        width = width.repeat(frames).to(pixels).view(1, -1, 1, 1)
        return (pixels - low) / width

    def _tokens(self, module, x, plan):
        """Encoder tokens ``(B, h, w, T, band sets, D)`` for normalised frame-major ``x`` ``(B, T*C, H, W)``."""
        import torch

        from olmoearth_pretrain_minimal.olmoearth_pretrain_v1.utils.datatypes import MaskedOlmoEarthSample

        stamps = plan.option("timestamps")
        modality = plan.option("modality")
        bands, package_name = MODALITIES[modality][0], MODALITIES[modality][1]
        b, channels, h, w = x.shape
        frames = len(stamps)
        if channels != frames * len(bands):
            raise BandMismatchError(
                f"olmoearth got {channels} channels for {frames} time steps of {len(bands)} bands {list(bands)}; "
                "give the input one date per time step."
            )
        data = x.reshape(b, frames, len(bands), h, w).permute(0, 3, 4, 1, 2)  # (B, H, W, T, C)
        sets = 3 if (package_name == "sentinel2_l2a" and self.version == "v1") else 1
        mask = torch.zeros((b, h, w, frames, sets), dtype=torch.long, device=x.device)
        times = torch.tensor(stamps, dtype=torch.long, device=x.device).expand(b, -1, -1)
        sample = MaskedOlmoEarthSample(timestamps=times, **{package_name: data, f"{package_name}_mask": mask})
        out = module(sample, patch_size=self.variant.patch_size, input_res=BASE_GSD_M, fast_pass=True)
        return getattr(out["tokens_and_masks"], package_name)

    def forward_grid(self, module, x, plan):
        return self._tokens(module, x, plan).mean(dim=(3, 4)).permute(0, 3, 1, 2)

    def forward_pooled(self, module, x, plan):
        return self._tokens(module, x, plan).mean(dim=(1, 2, 3, 4))
