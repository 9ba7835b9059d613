"""Exports: many ROIs x models to Zarr (default), GeoTIFF/COG, NetCDF or npz, resumable.

See :func:`export_batch` and :func:`load_export`; the file layout is described in
:mod:`xrembed.export.formats`.
"""

from .load import ExportResult, ModelResult, load_export
from .runner import export_batch
from .types import ExportConfig, ExportLayout, ExportModelRequest, ExportTarget

__all__ = [
    "ExportConfig",
    "ExportLayout",
    "ExportModelRequest",
    "ExportResult",
    "ExportTarget",
    "ModelResult",
    "export_batch",
    "load_export",
]
