"""Request fingerprints, per-unit completion marks, and the export manifest.

The unit of work is one (ROI, model) pair. When its data is fully written, a small JSON *mark* is
written atomically (temporary file, then ``os.replace``) under the export's state folder: a process
killed at any moment leaves each unit either marked (its data complete) or not (redone on resume).
The manifest is a view of the marks, rewritten atomically after each model and at the end.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..cache import atomic_path, jsonable  # jsonable: re-exported, the exporters import it from here

MANIFEST_VERSION = 1


def fingerprint(**parts: Any) -> str:
    """sha1 of the canonical JSON of everything that determines a unit's result."""
    text = json.dumps(jsonable(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never a torn one."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(jsonable(payload), f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def read_json(path: Path) -> Any | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class Marks:
    """Completion marks of (item, model) units under ``state_dir/marks/<model>/<item>.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / "marks"

    def path(self, model: str, item: str) -> Path:
        return self.root / model / f"{item}.json"

    def read(self, model: str, item: str) -> dict | None:
        return read_json(self.path(model, item))

    def is_done(self, model: str, item: str, fp: str) -> bool:
        mark = self.read(model, item)
        return bool(mark) and mark.get("status") == "ok" and mark.get("fingerprint") == fp

    def write(self, model: str, item: str, **fields: Any) -> None:
        fields.setdefault("time", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
        write_json_atomic(self.path(model, item), {"model": model, "item": item, **fields})

    def clear(self, model: str, item: str) -> None:
        try:
            os.unlink(self.path(model, item))
        except FileNotFoundError:
            pass


def build_manifest(
    marks: Marks, *, names: Sequence[str], models: Sequence[str], fingerprints: dict, header: dict
) -> dict:
    """The manifest: per item and model the status (``ok``/``failed``/``pending``), fingerprint, error."""
    items = []
    for index, name in enumerate(names):
        entries = {}
        for model in models:
            mark = marks.read(model, name) or {}
            fp = fingerprints[model][index]
            current = mark.get("fingerprint") == fp
            status = mark.get("status", "pending") if current else "pending"
            entry = {"status": status, "fingerprint": fp}
            for key in ("error", "attempts", "paths", "meta", "time"):
                if current and key in mark:
                    entry[key] = mark[key]
            entries[model] = entry
        statuses = {e["status"] for e in entries.values()}
        status = "ok" if statuses == {"ok"} else ("failed" if statuses == {"failed"} else "partial")
        if statuses == {"pending"}:
            status = "pending"
        items.append({"index": index, "name": name, "status": status, "models": entries})
    overall = {i["status"] for i in items}
    status = "ok" if overall <= {"ok"} else ("failed" if overall == {"failed"} else "partial")
    if "pending" in overall:
        status = "incomplete"
    return {
        "manifest_version": MANIFEST_VERSION,
        **header,
        "status": status,
        "n_items": len(names),
        "models": list(models),
        "items": items,
    }
