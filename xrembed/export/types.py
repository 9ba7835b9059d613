"""rs-embed's export value types: where to write (:class:`ExportTarget`), how (:class:`ExportConfig`),
and which models (:class:`ExportModelRequest`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ..errors import OptionError, SpecError
from ..options import positive_int
from ..specs import FetchSpec, SensorSpec


class ExportLayout(str, Enum):
    COMBINED = "combined"
    PER_ITEM = "per_item"


@dataclass(frozen=True)
class ExportTarget:
    """``combined(out_file)``: one store/file for all ROIs; ``per_item(out_dir)``: one per ROI."""

    layout: ExportLayout
    out_file: str | os.PathLike | None = None
    out_dir: str | os.PathLike | None = None
    names: Sequence[str] | None = None

    def __post_init__(self) -> None:
        layout = ExportLayout(self.layout)
        object.__setattr__(self, "layout", layout)
        if layout is ExportLayout.COMBINED and self.out_file is None:
            raise SpecError("ExportTarget.combined needs out_file, e.g. ExportTarget.combined('embeddings.zarr').")
        if layout is ExportLayout.PER_ITEM and self.out_dir is None:
            raise SpecError("ExportTarget.per_item needs out_dir, e.g. ExportTarget.per_item('exports/').")
        if self.names is not None:
            names = [str(n) for n in self.names]
            bad = [n for n in names if not n or "/" in n or n.startswith(".") or n != n.strip()]
            if bad or len(set(names)) != len(names):
                raise SpecError(f"ExportTarget names must be unique, non-empty, without '/' or a leading '.': {bad or names}.")
            object.__setattr__(self, "names", tuple(names))

    @classmethod
    def combined(cls, out_file: str | os.PathLike, *, names: Sequence[str] | None = None) -> ExportTarget:
        return cls(ExportLayout.COMBINED, out_file=out_file, names=names)

    @classmethod
    def per_item(cls, out_dir: str | os.PathLike, *, names: Sequence[str] | None = None) -> ExportTarget:
        return cls(ExportLayout.PER_ITEM, out_dir=out_dir, names=names)

    @property
    def path(self) -> Path:
        return Path(os.fspath(self.out_file if self.layout is ExportLayout.COMBINED else self.out_dir))

    def path_for(self, fmt: str) -> Path:
        """The target path; a combined ``out_file`` without a suffix gets the format's (as rs-embed)."""
        path = self.path
        if self.layout is ExportLayout.COMBINED and not path.suffix:
            path = path.with_name(path.name + {"zarr": ".zarr", "netcdf": ".nc", "npz": ".npz"}.get(fmt, ""))
        return path

    def item_names(self, n: int) -> list[str]:
        if self.names is None:
            return [f"p{i:05d}" for i in range(n)]
        if len(self.names) != n:
            raise SpecError(f"ExportTarget has {len(self.names)} names for {n} spatials; give one name per ROI.")
        return list(self.names)


@dataclass(frozen=True)
class ExportConfig:
    """How to export (rs-embed's fields; ``format`` defaults to Zarr here).

    ``save_inputs=True`` stores, per ROI and model, the exact model input (bands after selection, in model
    order, before normalisation, on its grid) beside the embeddings in every format; :func:`load_export`
    gives it back as ``ModelResult.inputs``. It is off by default here (rs-embed's default is on), since
    the inputs are usually far larger than the embeddings and stay readable from their source.
    ``resume=True`` skips (ROI, model) units already complete with the same request fingerprint.
    ``continue_on_error`` records a failing unit and goes on; ``max_retries`` / ``retry_backoff_s``
    retry transient fetch errors. ``num_workers`` threads fetch ROIs ahead of the model;
    ``infer_batch_size`` tiles go through each forward pass. ``chunk_size``, ``async_write`` and
    ``writer_workers`` are accepted for rs-embed compatibility; writes here stream per unit.
    ``overwrite=True`` lets the export replace a target, manifest or item file that xrembed did not
    write; by default such a path is refused (:class:`~xrembed.errors.OverwriteError`) and left as it is.
    """

    format: str = "zarr"
    save_inputs: bool = False
    save_embeddings: bool = True
    save_manifest: bool = True
    fail_on_bad_input: bool = False
    chunk_size: int = 16
    infer_batch_size: int | None = None
    num_workers: int = 8
    continue_on_error: bool = False
    max_retries: int = 0
    retry_backoff_s: float = 0.0
    async_write: bool = True
    writer_workers: int = 2
    resume: bool = False
    show_progress: bool = True
    input_prep: Any = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        from .formats import normalize_format

        object.__setattr__(self, "format", normalize_format(self.format))
        if not self.save_embeddings:
            raise OptionError(
                "save_embeddings=False (inputs only) is not supported: the export runs the model for every unit. To "
                "keep only the inputs, write xrembed.open_gee/open_raster(...) to Zarr; to check them, use "
                "inspect_model_input."
            )
        for name in ("num_workers", "chunk_size"):
            positive_int(f"ExportConfig.{name}", getattr(self, name))
        positive_int("ExportConfig.infer_batch_size", self.infer_batch_size, allow_none=True)
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise OptionError(f"ExportConfig.max_retries must be an integer >= 0, got {self.max_retries!r}.")
        if isinstance(self.retry_backoff_s, bool) or not isinstance(self.retry_backoff_s, (int, float)) or not (
            self.retry_backoff_s >= 0
        ):
            raise OptionError(f"ExportConfig.retry_backoff_s must be a number of seconds >= 0, got {self.retry_backoff_s!r}.")
        flags = ("save_inputs", "save_embeddings", "save_manifest", "fail_on_bad_input", "continue_on_error",
                 "async_write", "resume", "show_progress",
                 "overwrite")
        for name in flags:  # "no" is a truthy string: a flag must be a real bool
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"ExportConfig.{name} must be True or False, got {getattr(self, name)!r}.")


@dataclass(frozen=True)
class ExportModelRequest:
    """One model of an export, with its own sensor/fetch/modality and ``.rsembed.embed`` keywords.

    ``label`` names its group/keys in the output (default: ``name``); give distinct labels to export
    one model twice (e.g. two variants).
    """

    name: str
    sensor: SensorSpec | None = None
    fetch: FetchSpec | None = None
    modality: str | None = None
    model_config: Mapping[str, Any] | None = field(default=None)
    label: str | None = None

    @classmethod
    def configure(cls, name: str, *, sensor=None, fetch=None, modality=None, label=None, **model_kwargs):
        return cls(name, sensor=sensor, fetch=fetch, modality=modality, model_config=model_kwargs or None, label=label)

    @property
    def key(self) -> str:
        return self.label or self.name
