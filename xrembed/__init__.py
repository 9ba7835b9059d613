"""xrembed: remote-sensing foundation models as lazy, georeferenced xarray embedding rasters.

``import xrembed`` registers the ``.rsembed`` accessor on ``xarray.DataArray`` and ``xarray.Dataset``.

>>> import xrembed
>>> da = xrembed.open_raster("sample")                       # doctest: +SKIP
>>> emb = da.rsembed.embed("dofa", weights="DOFA_ViT_base_e100.pth")  # doctest: +SKIP
"""

from __future__ import annotations

from ._version import __version__

import rioxarray  # noqa: F401  (registers .rio, used for CRS handling)

from . import accessor  # noqa: F401  (registers .rsembed)
from . import errors
from .api import (
    Embedding,
    UserData,
    get_embedding,
    get_embedding_from_data,
    get_embeddings_batch,
    get_embeddings_batch_from_data,
    get_embeddings_batch_from_inputs,
    inspect_gee_patch,
    inspect_model_input,
    inspect_provider_patch,
    list_models_for_data,
    reset_runtime,
)
from .api_model import Model
from .analysis.change import change  # light: numpy and xarray only
from .analysis.compare import compare  # light: scikit-learn is imported when it is called
from .embedding import embed
from .text.encode import encode_text  # light: torch and the tokenizers load on first use
from .export import (
    ExportConfig,
    ExportModelRequest,
    ExportResult,
    ExportTarget,
    export_batch,
    load_export,
)
from .catalog import describe_model, list_models, list_products, open_gee
from .sources.precomputed import open_precomputed
from .sources.raster import open_raster, sample_path
from .sources.stac import open_stac
from .specs import BBox, FetchSpec, InputPrepSpec, OutputSpec, PointBuffer, SensorSpec, TemporalSpec
from .stream import EmbedRequest, to_zarr

__all__ = [
    "BBox",
    "EmbedRequest",
    "Embedding",
    "ExportConfig",
    "ExportModelRequest",
    "ExportResult",
    "ExportTarget",
    "FetchSpec",
    "InputPrepSpec",
    "Model",
    "OutputSpec",
    "PointBuffer",
    "SensorSpec",
    "TemporalSpec",
    "UserData",
    "__version__",
    "describe_model",
    "change",
    "compare",
    "embed",
    "encode_text",
    "errors",
    "export_batch",
    "get_embedding",
    "get_embedding_from_data",
    "get_embeddings_batch",
    "get_embeddings_batch_from_data",
    "get_embeddings_batch_from_inputs",
    "inspect_gee_patch",
    "inspect_model_input",
    "inspect_provider_patch",
    "list_models",
    "list_models_for_data",
    "list_products",
    "load_export",
    "open_gee",
    "open_precomputed",
    "open_raster",
    "open_stac",
    "plot",
    "reset_runtime",
    "sample_path",
    "to_zarr",
]

#: Submodules imported on first attribute access, so ``import xrembed`` loads no matplotlib (``xrembed.plot``).
_LAZY_SUBMODULES = ("plot",)


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
