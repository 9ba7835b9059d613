"""``export_batch``: embed many ROIs with several models into Zarr (or GeoTIFF, NetCDF, npz), resumably.

For each model, the ROIs still to do go through :func:`xrembed.batch.iter_embed` (one model load,
concurrent fetch, shared forward passes) and each result is written as soon as it is ready: to the
Zarr target itself, or, for the other formats, to a Zarr staging store that is converted once at the
end. After a unit's data is written its completion mark is written atomically, so a killed export
resumes (``ExportConfig(resume=True)``) without losing or repeating finished units.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from .. import batch
from .._version import __version__
from ..errors import ExportError, OptionError
from ..models.registry import get_adapter
from ..models.weights import check_weights
from ..requests import POOLED, check_spatial, drop_single_time, embed_kwargs, product_result, source_request
from ..sources.precomputed import is_product
from ..specs import OutputSpec, TemporalSpec
from ..tiling import check_input_prep, overlap_stride
from . import ownership, store
from .formats import INPUT_SUFFIX, input_label, is_input_label, item_paths, read_combined, write_combined, write_item
from .identity import path_identity
from .manifest import Marks, build_manifest, fingerprint, jsonable, write_json_atomic
from .types import ExportConfig, ExportLayout, ExportModelRequest, ExportTarget

STATE_NAME = ".xrembed"
#: How the user says "replace what xrembed did not write", named in every refusal.
OVERWRITE_FLAG = "ExportConfig(overwrite=True)"
#: Suffixes that say which format a combined ``out_file`` holds.
_SUFFIX_FORMATS = {".zarr": "zarr", ".nc": "netcdf", ".nc4": "netcdf", ".npz": "npz", ".tif": "geotiff",
                   ".tiff": "geotiff"}
_FORMAT_SUFFIX = {"zarr": ".zarr", "netcdf": ".nc", "npz": ".npz", "geotiff": ".tif"}


class ExportPaths:
    """Where an export keeps its data, staging store, marks and manifest."""

    def __init__(self, target: ExportTarget, fmt: str) -> None:
        self.layout, self.fmt, self.root = target.layout, fmt, target.path_for(fmt)
        if self.combined:
            self.state = self.root.parent / f".{self.root.name}{STATE_NAME}"
            self.manifest = self.root.with_suffix(".json") if self.root.suffix else Path(f"{self.root}.json")
        else:
            self.state = self.root / STATE_NAME
            self.manifest = self.root / "manifest.json"
        self.staging = self.state / "staging.zarr"

    @property
    def combined(self) -> bool:
        return self.layout is ExportLayout.COMBINED

    def unit(self, label: str, name: str) -> tuple[Path, str]:
        """(Zarr store, group) of one unit's data."""
        if self.fmt == "zarr" and not self.combined:
            return self.root / f"{name}.zarr", label
        data = self.root if self.fmt == "zarr" else self.staging
        return data, f"{label}/{name}"

    def stack(self, label: str) -> tuple[Path, str] | None:
        """(store, group) of the pooled stack of ``label``; ``None`` where results are per-item groups."""
        if self.fmt == "zarr" and not self.combined:
            return None
        return (self.root if self.fmt == "zarr" else self.staging), label


def export_batch(
    *,
    spatials: Sequence,
    temporal: TemporalSpec | None,
    models: Sequence[str | ExportModelRequest],
    target: ExportTarget,
    config: ExportConfig | None = None,
    backend: str = "auto",
    device: str = "auto",
    output: OutputSpec = POOLED,
    sensor=None,
    fetch=None,
    modality: str | None = None,
    input_prep=None,
    source: Any = None,
    ee_init_kwargs=None,
) -> list[dict] | dict:
    """Embed ``spatials`` with each of ``models`` and write them to ``target`` (rs-embed's ``export_batch``).

    Returns the manifest: a dict for ``ExportTarget.combined`` and the list of per-item entries for
    ``ExportTarget.per_item`` (as rs-embed). The manifest is also written beside the data
    (``<out_file stem>.json`` or ``<out_dir>/manifest.json``); :func:`load_export` reads it all back.

    Examples
    --------
    >>> import xrembed
    >>> xrembed.export_batch(spatials=[xrembed.PointBuffer(-9.5, 25.0, 1120)],                  # doctest: +SKIP
    ...                      temporal=xrembed.TemporalSpec.range("2022-06-01", "2022-09-01"),
    ...                      models=["dofa", "terrafm"], target=xrembed.ExportTarget.combined("emb.zarr"),
    ...                      config=xrembed.ExportConfig(resume=True))
    """
    config = config or ExportConfig()
    if not isinstance(config, ExportConfig):
        raise OptionError(f"config must be an ExportConfig, got {type(config).__name__}; e.g. ExportConfig(resume=True).")
    if not isinstance(target, ExportTarget):
        raise OptionError(
            f"target must be an ExportTarget, got {type(target).__name__} {target!r}; use "
            "ExportTarget.combined('emb.zarr') (one store or file) or ExportTarget.per_item('out/') (one per ROI)."
        )
    if isinstance(models, (str, ExportModelRequest)):  # one model, not a sequence of characters
        models = [models]
    spatials = list(spatials)
    for spatial in spatials:
        check_spatial(spatial)
    if not spatials:
        raise OptionError("spatials is empty: give at least one BBox or PointBuffer.")
    output = OutputSpec(output) if isinstance(output, str) else output
    requests = [m if isinstance(m, ExportModelRequest) else ExportModelRequest(str(m)) for m in models]
    labels = [r.key for r in requests]
    if not requests or len(set(labels)) != len(labels) or any(
        "/" in x or "__" in x or x.startswith(".") or is_input_label(x) for x in labels
    ):
        raise OptionError(
            f"models must be non-empty with distinct labels (no '/' or '__', not ending in {INPUT_SUFFIX!r}), got "
            f"{labels}; export one model twice with ExportModelRequest.configure(name, label='...', variant=...)."
        )
    for r in requests:  # an unknown model, a typo'd or meaningless keyword fails here, before the target is touched
        if not is_product(r.name):
            check_weights(get_adapter(r.name, (r.model_config or {}).get("variant")),
                          (r.model_config or {}).get("weights"))
        batch.check_model_config(r.name, r.model_config, where=f"ExportModelRequest.configure({r.name!r}, ...)")
        check_input_prep(r.name, (r.model_config or {}).get("input_prep", input_prep if input_prep is not None
                                                              else config.input_prep),
                         (r.model_config or {}).get("variant"))
    fmt = config.format
    if fmt == "geotiff" and target.layout is ExportLayout.COMBINED:
        raise OptionError("GeoTIFF holds one grid per file: use ExportTarget.per_item(...) for GeoTIFF, or format='zarr'.")
    if fmt == "geotiff" and output.mode != "grid":
        raise OptionError("GeoTIFF stores grids: use output=OutputSpec.grid(), or format='zarr'/'netcdf'/'npz' for pooled.")
    names = target.item_names(len(spatials))
    paths = ExportPaths(target, fmt)
    input_prep = input_prep if input_prep is not None else config.input_prep
    # Every label whose data the export writes: the models' and, with save_inputs, their inputs'.
    stored = labels + ([input_label(x) for x in labels] if config.save_inputs else [])
    _claim_target(paths, names, stored, config)
    try:  # the first writes: an unwritable place fails here, before any ROI is fetched
        if not config.resume:
            _clear_previous(paths, names, stored)
        _remove_stale_temporaries(paths)
        ownership.mark_state(paths.state)
    except OSError as err:
        raise ExportError(
            f"cannot write the export at {paths.root}: {err.strerror or err} ({err.filename or paths.state}). "
            "Choose a target in a folder you can write to."
        ) from err
    marks = Marks(paths.state)

    common = {"temporal": temporal, "output": output, "format": fmt, "layout": target.layout.value,
              "input_prep": getattr(input_prep, "mode", input_prep), "backend": backend, "source": _source_id(source)}
    # What the files *are*, not just their names: a replaced checkpoint or input must not resume.
    common["source_identity"] = path_identity(source)
    if config.save_inputs:  # a unit done without its input is not done for an export that saves inputs
        common["save_inputs"] = True
    if getattr(input_prep, "tile_stride", None) is not None:  # overlapping tiles give other grids
        common["tile_stride"] = input_prep.tile_stride
    if getattr(input_prep, "tile_size", None) is not None:  # tiles of another size give other values
        common["tile_size"] = input_prep.tile_size
    fps = {
        r.key: [
            fingerprint(model=r, weights_identity=path_identity((r.model_config or {}).get("weights")), spatial=s,
                        item=(i, name, len(names)), sensor=sensor, fetch=fetch, modality=modality, **common)
            for i, (s, name) in enumerate(zip(spatials, names))
        ]
        for r in requests
    }
    header = {ownership.MARK: ownership.mark("manifest"), "xrembed_version": __version__,
              "layout": target.layout.value, "format": fmt,
              "target": os.fspath(paths.root), "spatials": jsonable(spatials), "temporal": jsonable(temporal),
              "output": jsonable(output), "backend": backend, "save_inputs": config.save_inputs}

    def save_manifest() -> dict:
        manifest = build_manifest(marks, names=names, models=labels, fingerprints=fps, header=header)
        if config.save_manifest:
            write_json_atomic(paths.manifest, manifest)
        return manifest

    present = _DataCheck()
    todo = {
        r.key: [i for i in range(len(names))
                if not (marks.is_done(r.key, names[i], fps[r.key][i]) and present(marks.read(r.key, names[i])))]
        for r in requests
    }
    touched: set[str] = set()
    from tqdm.auto import tqdm

    total = sum(len(v) for v in todo.values())
    skipped = len(names) * len(requests) - total
    with tqdm(total=total, desc="xrembed export", unit="unit", disable=not config.show_progress) as bar:
        if skipped:
            bar.set_postfix_str(f"{skipped} complete units skipped")
        for req in requests:
            label = req.key
            if not todo[label]:
                continue
            if len(todo[label]) == len(names):
                _clear_model(paths, label, names)  # nothing of it is complete: start from a clean slate
            src = source_request(
                req.name, backend, temporal=temporal, sensor=req.sensor or sensor, fetch=req.fetch or fetch,
                modality=req.modality or modality, source=source, ee_init_kwargs=ee_init_kwargs,
            )
            writer = _UnitWriter(paths, names, label)
            for index, result, error, attempts, model_input in _results(req, src, todo[label], spatials, output,
                                                                        input_prep, device, config):
                name = names[index]
                if error is None:
                    try:
                        written = writer.write(index, result)
                        if model_input is not None:
                            written += writer.write_input(index, model_input)
                    except Exception as err:  # noqa: BLE001  (a unit that cannot be computed/written fails alone)
                        error = err
                if error is None:
                    meta = {k: v for k, v in result.attrs.items() if k in ("input_crs", "input_bounds", "cell_size")}
                    marks.write(label, name, status="ok", fingerprint=fps[label][index], attempts=attempts,
                                paths=written, meta=meta)
                else:
                    marks.write(label, name, status="failed", fingerprint=fps[label][index], attempts=attempts,
                                error=f"{type(error).__name__}: {error}")
                touched.add(name)
                bar.update(1)
                if error is not None and not config.continue_on_error:
                    save_manifest()
                    raise ExportError(
                        f"ROI {index} ({name}) failed for model {label!r}: {error}. The manifest "
                        f"{paths.manifest} records the units done; rerun with ExportConfig(resume=True, "
                        "continue_on_error=True) to finish the others."
                    ) from error
            save_manifest()
    _finish_files(paths, names, stored, marks, fps, touched)
    manifest = save_manifest()
    return manifest if target.layout is ExportLayout.COMBINED else manifest["items"]


def _results(req, src, indices, spatials, output, input_prep, device, config):
    """Yield ``(index, result, error, attempts, model_input)`` for the ROIs ``indices`` of one model.

    ``model_input`` is the lazy model input of the unit with ``save_inputs`` (else ``None``); a product
    has no model input.
    """
    if src.backend == "product":
        for i in indices:
            try:
                yield i, drop_single_time(product_result(req.name, spatials[i], src.temporal, src.source, output)), None, 1, None
            except Exception as err:  # noqa: BLE001  (reported per item)
                yield i, None, err, 1, None
        return
    kwargs = {**src.embed_defaults(),
              **embed_kwargs(req.name, output, input_prep, device, src.modality, dict(req.model_config or {}))}
    if config.infer_batch_size is not None:
        kwargs.setdefault("batch_size", config.infer_batch_size)
    openers = src.openers([spatials[i] for i in indices])
    prep = (req.model_config or {}).get("input_prep", input_prep)  # a per-model InputPrepSpec wins, as in embed()
    stride = overlap_stride(req.name, prep, (req.model_config or {}).get("variant"))
    if stride is not None:  # overlapping tiles: ROI by ROI through xrembed.overlap
        from ..overlap import embed_overlapping
        from .inputs import model_input as build_input

        for i, opener in zip(indices, openers):
            try:
                obj = opener()
                result = drop_single_time(embed_overlapping(obj, req.name, tile_stride=stride, **kwargs))
                saved = build_input(obj, req.name, kwargs) if config.save_inputs else None
            except Exception as err:  # noqa: BLE001  (reported per item)
                yield i, None, err, 1, None
                continue
            yield i, result, None, 1, saved
        return
    opened: dict[int, Any] = {}
    if config.save_inputs:  # keep what each opener opened: the saved input is read from the same source

        def remembering(j, opener):
            def open_():
                opened[j] = opener()
                return opened[j]

            return open_

        openers = [remembering(j, opener) for j, opener in enumerate(openers)]
    for outcome in batch.iter_embed(
        openers, req.name, num_workers=config.num_workers, max_retries=config.max_retries,
        retry_backoff_s=config.retry_backoff_s, **kwargs,
    ):
        model_input, error = None, outcome.error
        obj = opened.pop(outcome.index, None)
        if error is None and config.save_inputs:
            try:
                from .inputs import model_input as build_input

                model_input = build_input(obj, req.name, kwargs)
            except Exception as err:  # noqa: BLE001  (the unit fails alone, with the reason)
                error = err
        yield indices[outcome.index], drop_single_time(outcome.result), error, outcome.attempts, model_input


class _UnitWriter:
    """Writes one model's results; pooled vectors of a combined export go into one stack."""

    def __init__(self, paths: ExportPaths, names: list[str], label: str) -> None:
        self.paths, self.names, self.label = paths, names, label
        self.stack_ready = False
        self.marked: set[Path] = set()

    def _mark(self, where: Path) -> None:
        """Put xrembed's mark on a store before its first byte, so that a later run may replace it."""
        if where not in self.marked:
            ownership.mark_zarr(where, "export")
            self.marked.add(where)

    def write(self, index: int, result: xr.DataArray) -> list[str]:
        stack = self.paths.stack(self.label)
        if stack is not None and result.dims == ("embedding",):
            where, group = stack
            self._mark(where)
            if not self.stack_ready:
                if not store.stack_matches(where, group, self.names, result.sizes["embedding"]):
                    store.create_stack(where, group, self.names, result)
                self.stack_ready = True
            store.write_stack_row(where, group, index, result)
            return [f"{where}#{group}[{index}]"]
        where, group = self.paths.unit(self.label, self.names[index])
        self._mark(where)
        store.write_group(where, group, result)
        return [f"{where}#{group}"]

    def write_input(self, index: int, model_input: xr.DataArray) -> list[str]:
        """Write one unit's saved model input (its own group, beside the embeddings)."""
        if self.paths.fmt == "geotiff":
            from .formats import _check_geotiff

            _check_geotiff(self.label, model_input)  # a time-series input fails its unit now, with the reason
        where, group = self.paths.unit(input_label(self.label), self.names[index])
        self._mark(where)
        store.write_group(where, group, model_input)
        return [f"{where}#{group}"]


def _finish_files(paths: ExportPaths, names, labels, marks: Marks, fps, touched: set[str]) -> None:
    """Convert the staging store into the GeoTIFF/NetCDF/npz files (atomic writes; idempotent)."""
    if paths.fmt == "zarr" or not paths.staging.exists():
        return

    def ok(label, i) -> bool:
        unit = label[: -len(INPUT_SUFFIX)] if is_input_label(label) else label  # an input is its unit's
        return marks.is_done(unit, names[i], fps[unit][i])

    staged = read_combined(paths.staging, "zarr")
    results: dict[str, dict[str, xr.DataArray | None]] = {}
    for label in labels:
        content = staged.get(label)
        per_name: dict[str, xr.DataArray | None] = {}
        for i, name in enumerate(names):
            if content is None or not ok(label, i):
                per_name[name] = None
            elif isinstance(content, xr.DataArray):  # a pooled stack
                per_name[name] = content.isel(item=i, drop=True)
            else:
                per_name[name] = content.get(name)
        results[label] = per_name
    if paths.combined:
        if touched or not paths.root.exists():
            write_combined(paths.root, names, results, paths.fmt)
        return
    for name in names:
        present = {label: results[label][name] for label in labels if results[label][name] is not None}
        missing = not all(p.exists() for p in item_paths(paths.root, name, paths.fmt, list(present)))
        if present and (name in touched or missing):
            write_item(paths.root, name, present, paths.fmt)


def _claim_target(paths: ExportPaths, names, labels, config: ExportConfig) -> None:
    """Refuse, before anything is written, a target whose writing would destroy what xrembed did not write.

    The target, the manifest, the state folder and (per item) every item file are checked for xrembed's
    mark (:mod:`xrembed.export.ownership`); anything else there raises :class:`OverwriteError`, unless
    ``overwrite=True``, which removes it now so that the export starts clean.
    """
    root = paths.root
    if paths.combined:
        suffix = root.suffix.lower()
        if suffix == ".json":
            raise OptionError(f"out_file {root} ends in .json, the name of the export's manifest; name it "
                              f"{root.with_suffix(_FORMAT_SUFFIX[paths.fmt])}.")
        named = _SUFFIX_FORMATS.get(suffix)
        if named is not None and named != paths.fmt:
            raise OptionError(
                f"out_file {root} has the {named} suffix {root.suffix!r} but the export format is {paths.fmt!r}: "
                f"name it {root.with_suffix(_FORMAT_SUFFIX[paths.fmt])}, or pass ExportConfig(format={named!r})."
            )
    elif root.exists() and not root.is_dir():
        raise OptionError(f"out_dir {root} is a file, not a folder; ExportTarget.per_item(...) needs a folder.")
    candidates = [(paths.state, "export state folder"), (paths.manifest, "export manifest")]
    if paths.combined:
        candidates.append((root, "export target"))
    else:
        candidates += [(p, "export item file") for name in names for p in item_paths(root, name, paths.fmt, labels)]
    for path, what in candidates:
        there = ownership.check_replaceable(path, overwrite=config.overwrite, what=what, flag=OVERWRITE_FLAG)
        if there and not ownership.is_owned(path):
            ownership.remove(path, overwrite=True, what=what)  # overwrite=True was given for it
        elif there and path == root and paths.combined and path.is_dir() != (paths.fmt == "zarr"):
            ownership.remove(path, overwrite=False, what=what)  # xrembed's own output in another format


def _clear_previous(paths: ExportPaths, names, labels) -> None:
    """Remove what an earlier export to the same target wrote (only what carries xrembed's mark)."""

    def drop(path: Path, what: str) -> None:
        ownership.remove(path, overwrite=False, what=what, flag=OVERWRITE_FLAG)

    drop(paths.state, "export state folder")
    if paths.combined:
        drop(paths.root, "export target")
    else:
        for name in names:
            for p in item_paths(paths.root, name, paths.fmt, labels):
                drop(p, "export item file")
    drop(paths.manifest, "export manifest")


def _remove_stale_temporaries(paths: ExportPaths) -> None:
    """Temporary files a killed run left are never complete: drop them. Only xrembed's own temporaries of
    this export's files match (``.<stem>.tmp-<12 hex><suffix>`` beside the target or item files,
    ``.<manifest>.<random>.tmp`` beside the manifest, anything hidden in the state folder)."""
    import re

    stems = {paths.root.stem} if paths.combined else None
    pattern = re.compile(r"^\.(?P<stem>.+)\.tmp-[0-9a-f]{12}(\.[A-Za-z0-9]+)?$")
    manifest_tmp = re.compile(rf"^\.{re.escape(paths.manifest.name)}\.[A-Za-z0-9_]+\.tmp$")
    folder = paths.root.parent if paths.combined else paths.root
    candidates = []
    if folder.is_dir():
        for p in folder.iterdir():
            match = pattern.match(p.name)
            if match and (stems is None or match["stem"] in stems):
                candidates.append(p)
    if paths.manifest.parent.is_dir():
        candidates += [p for p in paths.manifest.parent.iterdir() if manifest_tmp.match(p.name)]
    if paths.state.is_dir():
        candidates += [p for p in paths.state.rglob(".*") if p.name.endswith(".tmp") or ".tmp-" in p.name]
    for p in candidates:
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)


class _DataCheck:
    """Whether the data a completion mark points at is still there (a deleted store must be redone)."""

    def __init__(self) -> None:
        self._groups: dict[str, set[str] | None] = {}

    def __call__(self, mark: dict | None) -> bool:
        places = (mark or {}).get("paths") or []
        return bool(places) and all(self._has(place) for place in places)

    def _has(self, place: str) -> bool:
        where, _, group = str(place).partition("#")
        group = group.split("[", 1)[0]
        if where not in self._groups:
            self._groups[where] = _zarr_arrays(Path(where))
        arrays = self._groups[where]
        return arrays is not None and (f"{group}/embeddings" in arrays or f"{group}/inputs" in arrays)


def _zarr_arrays(where: Path) -> set[str] | None:
    """Paths of every array in the Zarr store ``where`` (``None`` if it is missing or unreadable)."""
    import zarr

    if not where.is_dir():
        return None
    try:
        root = zarr.open_group(where, mode="r", use_consolidated=False)
        return {path for path, node in root.members(max_depth=None) if isinstance(node, zarr.Array)}
    except Exception:  # noqa: BLE001  (an unreadable store holds nothing we can count as done)
        return None


def _clear_model(paths: ExportPaths, label: str, names) -> None:
    """Drop any data of ``label`` left by an earlier, different request (its marks no longer apply)."""
    stack = paths.stack(label)
    if stack is not None:
        group_dir = stack[0] / label
        if group_dir.is_dir():
            shutil.rmtree(group_dir)


def _source_id(source) -> Any:
    if source is None or isinstance(source, (str, os.PathLike)):
        return None if source is None else os.fspath(source)
    if isinstance(source, (list, tuple)):
        return [_source_id(s) for s in source]
    return getattr(source, "id", None) or repr(source)
