"""The optional ``analysis`` extra (scikit-learn, geopandas, matplotlib), imported only when needed."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingDependencyError

__all__ = ["MissingDependencyError", "INSTALL_HINT", "require"]

#: The one command that installs everything the analysis layer needs.
INSTALL_HINT = 'pip install "xrembed[analysis]"'

# import name -> distribution name (what pip installs)
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "geopandas": "geopandas", "matplotlib": "matplotlib", "shapely": "shapely"}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` (e.g. ``"sklearn.decomposition"``) for ``feature``, or raise a clear error.

    Parameters
    ----------
    module
        Dotted module name to import.
    feature
        What needs it, in words (``"emb.rsembed.pca()"``), for the message.

    Returns
    -------
    types.ModuleType
        The imported module.

    Raises
    ------
    MissingDependencyError
        When the module (or its top-level package) is not installed.

    Examples
    --------
    >>> require("sklearn.decomposition", "PCA").PCA.__name__
    'PCA'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        dist = _DISTRIBUTIONS.get(top, top)
        raise MissingDependencyError(
            f"{feature} needs {dist}, which is not installed ({err}). Install the analysis extra: {INSTALL_HINT}"
        ) from err
