"""Figures of embedding grids (matplotlib, from the optional ``analysis`` extra).

``import xrembed`` does not import this module; ``xrembed.plot`` imports it on first use, and it imports
matplotlib only inside its functions.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .analysis._deps import require
from .geo import Grid

__all__ = ["pseudocolor"]


def pseudocolor(
    emb: xr.DataArray,
    *,
    ax=None,
    title: str | None = None,
    figsize: tuple[float, float] = (6.0, 6.0),
    **to_rgb_options,
):
    """A matplotlib figure of an embedding grid in pseudo-colour (like rs-embed's ``plot_embedding_pseudocolor``).

    The grid goes through :func:`xrembed.analysis.to_rgb` (three PCA components, robust stretch) unless it is
    already an RGB quicklook ``(band=3, y, x)`` uint8; cells with no data are transparent. Axes are the grid's
    CRS coordinates (its extent), so the picture lines up with other maps of the place.

    Parameters
    ----------
    emb
        An embedding grid ``(embedding, y, x)``, a PCA output ``(component=3, y, x)`` or an RGB quicklook.
    ax
        A matplotlib ``Axes`` to draw into (default: a new figure).
    title
        Axes title (default: the model name from ``emb.attrs``).
    figsize
        Size of a new figure, in inches.
    **to_rgb_options
        Passed to :func:`xrembed.analysis.to_rgb` (``bands=``, ``percentiles=``, ``value_range=``, ``seed=``...).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = xrembed.plot.pseudocolor(emb)          # doctest: +SKIP
    >>> fig.savefig("emb.png")                       # doctest: +SKIP
    """
    require("matplotlib", "xrembed.plot.pseudocolor()")
    from .analysis.rgb import to_rgb

    is_rgb = "band" in emb.dims and emb.sizes["band"] == 3 and emb.dtype == np.uint8
    rgb = emb if is_rgb else to_rgb(emb, **to_rgb_options)
    extra = [d for d in rgb.dims if d not in ("band", "y", "x")]
    if extra:
        from .errors import OptionError

        raise OptionError(f"pseudocolor() draws one (y, x) grid, but this one also has {extra}; pick one, e.g. `emb.isel({extra[0]}=0)`.")
    values = np.asarray(rgb.transpose("y", "x", "band").values)
    alpha = np.where((values != 0).any(axis=-1), 255, 0).astype(np.uint8)  # nodata (0, 0, 0) is transparent
    rgba = np.concatenate([values, alpha[..., None]], axis=-1)
    grid = Grid.from_xarray(rgb)
    left, bottom, right, top = grid.bounds
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    ax.imshow(rgba, extent=(left, right, bottom, top), interpolation="nearest")
    units = "degrees" if grid.crs.is_geographic else "m"
    ax.set_xlabel(f"x ({units}, {grid.crs.to_string()})")
    ax.set_ylabel(f"y ({units})")
    name = title if title is not None else emb.attrs.get("model", "embedding")
    channels = rgb.attrs.get("channels", "rgb")
    ax.set_title(f"{name}: {channels}" if title is None else title)
    return fig
