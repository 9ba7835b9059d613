"""The Earth Engine sensors the families read by default, as data the families declare.

A family lists them per modality in its ``sensors`` class attribute (the first entry is the default);
:meth:`~xrembed.models.base.ModelAdapter.default_sensor` answers from it. Band names use Earth Engine's
spelling (``B4``, not ``B04``). Sources take a :class:`~xrembed.specs.SensorSpec` and know nothing of models.
"""

from __future__ import annotations

from ..specs import SensorSpec

S2_SR = "COPERNICUS/S2_SR_HARMONIZED"
S2_TOA = "COPERNICUS/S2_HARMONIZED"
S1_DB = "COPERNICUS/S1_GRD"
S1_LINEAR = "COPERNICUS/S1_GRD_FLOAT"

EE_S2_RGB = ("B4", "B3", "B2")
EE_S2_12 = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
EE_S1 = ("VV", "VH")

#: True-colour Sentinel-2 L2A at 10 m (the RGB families).
S2_RGB = SensorSpec(S2_SR, EE_S2_RGB, scale_m=10, modality="s2")
#: Sentinel-1 backscatter in dB (DOFA's SAR convention).
S1_DB_SENSOR = SensorSpec(S1_DB, EE_S1, scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=False)
#: Sentinel-1 linear backscatter power (TerraFM's SAR stem).
S1_LINEAR_SENSOR = SensorSpec(S1_LINEAR, EE_S1, scale_m=10, cloudy_pct=None, modality="s1", use_float_linear=True)
