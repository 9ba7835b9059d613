"""``load_export``: read any export (Zarr, GeoTIFF, NetCDF, npz; combined or per item) back, georeferenced."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import OptionError
from .formats import input_label, read_combined, read_item, stack_pooled
from .manifest import read_json


@dataclass
class ModelResult:
    """One model's results: ``embeddings`` is a stacked ``(item, embedding)`` DataArray for pooled
    vectors (NaN rows where an item failed), or a list with one georeferenced DataArray (or ``None``)
    per item for grids. ``errors`` maps item names to their error. ``inputs`` (an export with
    ``ExportConfig(save_inputs=True)``; else ``None``) holds per item the exact model input: a georeferenced
    ``([time,] band, y, x)`` DataArray named ``inputs`` (bands after selection, before normalisation), or
    ``None`` where the item failed."""

    name: str
    status: str
    embeddings: xr.DataArray | list[xr.DataArray | None]
    meta: dict = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    inputs: list[xr.DataArray | None] | None = None


@dataclass
class ExportResult:
    """What :func:`load_export` returns; ``manifest`` is the export's manifest as written."""

    layout: str
    names: list[str]
    spatials: list
    temporal: Any
    n_items: int
    status: str
    models: dict[str, ModelResult]
    manifest: dict

    def embedding(self, model: str) -> xr.DataArray | list[xr.DataArray | None]:
        try:
            return self.models[model].embeddings
        except KeyError:
            raise OptionError(f"the export has no model {model!r}; it has {sorted(self.models)}.") from None

    def inputs(self, model: str) -> list[xr.DataArray | None]:
        """The saved model inputs of ``model``, one per item (``None`` where it failed)."""
        if model not in self.models:
            raise OptionError(f"the export has no model {model!r}; it has {sorted(self.models)}.")
        found = self.models[model].inputs
        if found is None:
            raise OptionError("this export holds no inputs: export with ExportConfig(save_inputs=True) to keep them.")
        return found

    @property
    def ok_models(self) -> list[str]:
        return [m for m, r in self.models.items() if r.status == "ok"]

    @property
    def failed_models(self) -> list[str]:
        return [m for m, r in self.models.items() if r.status == "failed"]


def manifest_path(path: Path) -> Path:
    """The manifest of an export given its out_file, out_dir, or the manifest itself."""
    if path.suffix == ".json" and path.is_file():
        return path
    if path.is_dir() and (path / "manifest.json").is_file() and not (path / "zarr.json").exists():
        return path / "manifest.json"
    candidate = path.with_suffix(".json") if path.suffix else Path(f"{path}.json")
    if candidate.is_file():
        return candidate
    raise OptionError(
        f"no xrembed export manifest found for {path} (looked for {candidate} and {path / 'manifest.json'}); "
        "pass the out_file or out_dir given to export_batch (exported with ExportConfig(save_manifest=True))."
    )


def load_export(path: str | os.PathLike) -> ExportResult:
    """Read an export written by :func:`~xrembed.export_batch`, with CRS and coordinates on every grid.

    ``path`` is the ``out_file`` of a combined export, the ``out_dir`` of a per-item one, or the
    manifest. Zarr and NetCDF grids open lazily.

    Examples
    --------
    >>> res = xrembed.load_export("emb.zarr")                                     # doctest: +SKIP
    >>> res.embedding("dofa")                       # (item, embedding), NaN rows for failed items  # doctest: +SKIP
    """
    mpath = manifest_path(Path(os.fspath(path)))
    manifest = read_json(mpath)
    if not manifest or "items" not in manifest:
        raise OptionError(f"{mpath} is not an xrembed export manifest.")
    fmt, layout = manifest["format"], manifest["layout"]
    names = [item["name"] for item in manifest["items"]]
    root = Path(manifest["target"])
    if not root.is_absolute() or not root.exists():  # the export was moved: use the manifest's place
        root = mpath.parent / root.name if layout == "combined" else mpath.parent
    status_of = {
        (model, item["name"]): entry for item in manifest["items"] for model, entry in item["models"].items()
    }

    if layout == "combined":
        content = read_combined(root, fmt)
        per_item = None
    else:
        content = None
        per_item = {name: (read_item(root, name, fmt) if _any_ok(status_of, name, manifest["models"]) else {})
                    for name in names}

    models = {}
    for model in manifest["models"]:
        entries = [status_of[(model, n)] for n in names]
        errors = {n: e["error"] for n, e in zip(names, entries) if e.get("error")}
        ok = [e["status"] == "ok" for e in entries]
        status = "ok" if all(ok) else ("failed" if not any(ok) else "partial")
        if content is not None:
            found = content.get(model, {})
            results = [None] * len(names) if isinstance(found, xr.DataArray) else [found.get(n) for n in names]
            stacked = found if isinstance(found, xr.DataArray) else None
        else:
            results = [per_item[n].get(model) for n in names]
            stacked = None
        results = [r if good else None for r, good in zip(results, ok)]
        if stacked is None and results and all(r is None or r.dims == ("embedding",) for r in results) and any(ok):
            stacked = stack_pooled(names, {n: r for n, r in zip(names, results) if r is not None})
        if stacked is not None:
            stacked = stacked.where(xr.DataArray(np.array(ok), dims="item"))  # unfinished rows are NaN
            embeddings: Any = stacked
        else:
            embeddings = results
        inputs = None
        if manifest.get("save_inputs"):
            if content is not None:
                found_inputs = content.get(input_label(model), {})
                inputs = [found_inputs.get(n) if isinstance(found_inputs, dict) else None for n in names]
            else:
                inputs = [per_item[n].get(input_label(model)) for n in names]
            inputs = [i if good else None for i, good in zip(inputs, ok)]
        models[model] = ModelResult(model, status, embeddings, errors=errors, inputs=inputs)
    return ExportResult(
        layout=layout, names=names, spatials=manifest.get("spatials", []), temporal=manifest.get("temporal"),
        n_items=len(names), status=manifest["status"], models=models, manifest=manifest,
    )


def _any_ok(status_of, name, models) -> bool:
    return any(status_of[(m, name)]["status"] == "ok" for m in models)


__all__ = ["ExportResult", "ModelResult", "load_export"]
