"""Input checks shared by the adapters: dtypes and wavelengths (metadata, at ``embed()`` time) and value
ranges (pixels, when the graph computes).

Dtypes
------
Checked by :func:`check_dtype` from the input's metadata (each picked variable of a Dataset), against the
value scale the model reads (the plan's ``scale`` option):

==========================================  ===========================================================
dtype                                       accepted?
==========================================  ===========================================================
float16/32/64                               yes
uint16, int16, uint32, int32, uint64, int64  yes
uint8                                       no for raw reflectance (an 8-bit quicklook is not 0..10000
                                            reflectance) and for SAR (dB / linear power); yes for a model
                                            that declares no scale
int8                                        no (no sensor delivers signed 8-bit reflectance)
bool, complex                               no
datetime64, timedelta64, object, str, bytes  no
==========================================  ===========================================================

Values
------
Checked per block on the valid (finite, not nodata) values only, with robust percentiles of a
deterministic subsample, so one undeclared fill pixel (65535, -9999) cannot defeat a check; a block with no
valid value passes.

* raw reflectance (0..10000): refused if the median of the non-zero values is in (0, 1.5] (already
  normalised to [0, 1]; up to half the pixels may be undeclared fill) or the median is negative (dB-like
  data, or the wrong modality);
* SAR in dB (DOFA ``s1``): refused if fewer than 5 % of the values are negative (linear power/amplitude);
* SAR linear power (TerraFM ``s1``): refused if the median is negative (dB) or above 2 (uncalibrated).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import DTypeError, InputRangeError, WavelengthError

#: A median non-zero value at or below this (and above 0) means the data were already scaled to [0, 1].
NORMALISED_PEAK = 1.5
#: At most this many values of a block are looked at (a fixed stride: deterministic, and fast).
SAMPLE_SIZE = 65_536
#: Wavelengths at or above this many micrometres are taken for nanometres (DOFA's SAR value is 5.405).
NANOMETRE_THRESHOLD = 100.0

#: Value scales whose dtypes are checked (the ``scale`` option of the adapters' plans).
REFLECTANCE, DB, LINEAR_POWER = "reflectance", "db", "linear_power"


def check_dtype(dtype, scale: str | None, who: str, name: str | None = None) -> None:
    """Raise :class:`DTypeError` if ``dtype`` cannot hold what a model reading ``scale`` values expects.

    ``scale`` is the plan's ``"scale"`` option (``None`` for a model that declares none: then only the
    dtypes that hold no measurement at all are refused); ``name`` names the Dataset variable, if any.

    Examples
    --------
    >>> check_dtype(np.dtype("uint16"), "reflectance", "dofa")
    >>> check_dtype(np.dtype("float32"), "db", "dofa")
    """
    dtype = np.dtype(dtype)
    subject = f"variable {name!r}" if name is not None else "the input"
    where = f"{subject} has"
    kind = dtype.kind
    if kind == "b":
        raise DTypeError(
            f"{who}: {where} dtype bool, a mask, not measurements. Embed the measured bands; apply a mask with "
            "`da.where(mask)` (masked pixels become NaN and are skipped)."
        )
    if kind == "c":
        raise DTypeError(
            f"{who}: {where} dtype {dtype}: complex (e.g. SLC) data cannot be embedded. Take the intensity "
            "(`abs(x) ** 2`) or amplitude first, calibrated as the model expects."
        )
    if kind not in "iuf":
        raise DTypeError(
            f"{who}: {where} dtype {dtype}, not numbers. Embed numeric bands (float or integer), e.g. "
            "`da.astype('float32')` after parsing the values."
        )
    if dtype == np.int8:
        raise DTypeError(
            f"{who}: {where} dtype int8; no sensor delivers signed 8-bit reflectance or backscatter "
            "(quantised embeddings are not model input). Load the original product, or cast with "
            "`da.astype('float32')` if the values really are on the model's scale."
        )
    if dtype == np.uint8 and scale == REFLECTANCE:
        raise DTypeError(
            f"{who} reads raw reflectance (0..10000) but {subject} is uint8 (8-bit): an 8-bit quicklook "
            "(0..255) is not reflectance. Load the raw product (uint16 or float), or, if the 8 bits really are "
            "reflectance, rescale explicitly and cast to float (e.g. `da.astype('float32') / 255 * 10000`)."
        )
    if dtype == np.uint8 and scale in (DB, LINEAR_POWER):
        unit = "backscatter in dB" if scale == DB else "calibrated linear backscatter power"
        raise DTypeError(
            f"{who} reads Sentinel-1 {unit} but {subject} is uint8 (8-bit): a byte image "
            "is not calibrated backscatter. Load the calibrated float product (e.g. Earth Engine "
            "COPERNICUS/S1_GRD or S1_GRD_FLOAT)."
        )


def valid_sample(pixels: np.ndarray, size: int = SAMPLE_SIZE) -> np.ndarray:
    """The finite values of ``pixels``, thinned to about ``size`` by a fixed stride (deterministic)."""
    flat = np.asarray(pixels).reshape(-1)
    if flat.size > size:
        sample = flat[:: -(-flat.size // size)]
        finite = sample[np.isfinite(sample)]
        if finite.size >= size // 16:
            return finite
        # Few valid values among many invalid ones: the stride may miss them, so look at all of them.
    finite = flat[np.isfinite(flat)]
    return finite[:: -(-finite.size // size)] if finite.size > size else finite


def check_raw_reflectance(pixels: np.ndarray, who: str, what: str = "Sentinel-2 reflectance") -> None:
    """Raise :class:`InputRangeError` if valid pixels are not raw 0..10000 reflectance.

    Refused: a median non-zero value in (0, 1.5] (normalised to [0, 1]) and a negative median (dB-like). ``who``
    names the model in the message (e.g. ``"dofa"``); NaNs are ignored; an all-NaN block passes.

    Examples
    --------
    >>> check_raw_reflectance(np.array([[[[120.0, 3400.0], [np.nan, 65535.0]]]]), "dofa")
    """
    values = valid_sample(pixels)
    if values.size == 0:
        return
    median = float(np.median(values))
    # Zeros are fill in both conventions and say nothing; undeclared fill (65535) may cover a whole
    # edge of a normalised scene, so the typical non-zero value decides, not the peak.
    nonzero = values[values != 0]
    typical = float(np.median(nonzero)) if nonzero.size else 0.0
    if 0 < typical <= NORMALISED_PEAK:
        raise InputRangeError(
            f"{who} expects raw {what} (0..10000) but half of the valid non-zero values are at or below "
            f"{typical:.3g}: the data look already normalised to [0, 1]. Multiply by 10000 (e.g. `x * 10000`) "
            "or load the raw product."
        )
    if median < 0:
        raise InputRangeError(
            f"{who} expects raw {what} (0..10000) but most valid values are negative (median {median:.3g}): "
            "the data look like SAR backscatter in dB, or an offset was subtracted. Pass optical reflectance; "
            "for Sentinel-1, use a SAR model and modality='s1' (dofa reads dB, terrafm linear power "
            "`10 ** (x / 10)`)."
        )


def check_db_backscatter(pixels: np.ndarray, who: str) -> None:
    """Raise :class:`InputRangeError` if valid SAR pixels are not in dB (fewer than 5 % negative values)."""
    values = valid_sample(pixels)
    if values.size and float(np.percentile(values, 5.0)) >= 0:
        raise InputRangeError(
            f"{who} expects Sentinel-1 backscatter in dB (mostly negative values) but at least 95 % of the values "
            "are >= 0: the data look like linear power or amplitude. Convert with `10 * np.log10(power)`."
        )


def check_linear_power(pixels: np.ndarray, who: str, max_median: float) -> None:
    """Raise :class:`InputRangeError` if valid SAR pixels are not calibrated linear power."""
    values = valid_sample(pixels)
    if values.size == 0:
        return
    median = float(np.median(values))
    if median < 0:
        raise InputRangeError(
            f"{who} expects Sentinel-1 backscatter as linear power (>= 0) but most values are negative "
            f"(median {median:.3g}): it looks like dB. Convert with `10 ** (x / 10)`, or use Earth "
            "Engine's COPERNICUS/S1_GRD_FLOAT."
        )
    if median > max_median:
        raise InputRangeError(
            f"{who} expects calibrated linear backscatter power (typically 0.001..1) but the "
            f"median value is {median:.4g}: the data look like uncalibrated amplitude DN or intensity. "
            "Calibrate to sigma0/gamma0 linear power (e.g. Earth Engine COPERNICUS/S1_GRD_FLOAT, or SNAP/"
            "sarsen radiometric calibration) before embedding."
        )


def check_wavelengths(wavelengths, bands: list[str]) -> tuple[float, ...]:
    """Validate caller-given ``wavelengths=`` (micrometres, one per band in ``bands``) and return them as floats.

    Strings, booleans and non-numbers are refused (``WavelengthError``), as are values that look like
    nanometres (``>= 100``).

    Examples
    --------
    >>> check_wavelengths([0.665, 0.56], ["B04", "B03"])
    (0.665, 0.56)
    """
    usage = "give one wavelength in micrometres per band, as numbers (e.g. wavelengths=[0.665, 0.56, 0.49])"
    if isinstance(wavelengths, (str, bytes)) or not np.iterable(wavelengths):
        raise WavelengthError(f"wavelengths={wavelengths!r} is not a list of numbers; {usage}.")
    values = list(wavelengths)
    bad = [w for w in values if isinstance(w, (bool, np.bool_)) or not isinstance(w, numbers.Real)]
    if bad:
        raise WavelengthError(f"wavelengths= holds non-numbers {bad!r}; {usage}.")
    waves = tuple(float(w) for w in values)
    if len(waves) != len(bands):
        raise WavelengthError(
            f"wavelengths= has {len(waves)} values but the model reads {len(bands)} bands {bands}; "
            "give one wavelength (micrometres) per band, in the same order."
        )
    if any(not np.isfinite(w) or w <= 0 for w in waves):
        raise WavelengthError(f"wavelengths must be positive micrometres, got {list(waves)}.")
    large = [w for w in waves if w >= NANOMETRE_THRESHOLD]
    if large:
        raise WavelengthError(
            f"wavelengths are micrometres; {large[0]:g} looks like nanometres: divide by 1000 "
            f"(e.g. wavelengths={[round(w / 1000, 6) if w >= NANOMETRE_THRESHOLD else w for w in waves]})."
        )
    return waves
