"""The analysis layer: from embedding rasters to answers (pictures, similarity, clusters, change, zonal
vectors, fair model comparisons).

Every name is exported lazily (PEP 562): ``import xrembed.analysis`` imports none of its modules, and none of
them imports scikit-learn, geopandas or matplotlib (the optional ``analysis`` extra) before it is called.

>>> import xrembed.analysis
>>> {"pca", "similarity", "zonal"} <= set(xrembed.analysis.__all__)
True
"""

from __future__ import annotations

import importlib

#: public name -> module (relative to this package) that defines it. Add a line per new export.
_EXPORTS = {
    # raster side
    "pca": "pca",
    "fit_pca": "pca",
    "FittedPCA": "pca",
    "to_rgb": "rgb",
    "similarity": "similarity",
    "query_vector": "similarity",
    "cosine_map": "similarity",
    "kmeans": "kmeans",
    "fit_kmeans": "kmeans",
    "FittedKMeans": "kmeans",
    "change": "change",
    # vector side
    "sample": "sample",
    "zonal": "zonal",
    "zonal_sums": "zonal",
    "ZonalSums": "zonal",
    "compare": "compare",
    "ComparisonResult": "compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
