"""The identity of the files a request reads, so that a resumed export notices when one was replaced.

A path alone is not enough: a checkpoint or raster replaced under the same name would otherwise keep
its stale results and be reported complete. Files are identified by their content (sha256, cached per
process by path, size and modification time, so a large checkpoint is hashed once); folders by the
size and modification time of every file in them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..cache import sha256_of

_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's content (cached while the file's size and mtime stay the same)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_of(path)
    return _HASHES[key]


def path_identity(value: Any) -> Any:
    """What identifies ``value`` if it names local files (a path, or a list of them); else ``None``.

    Examples
    --------
    >>> path_identity(None) is None, path_identity("random") is None
    (True, True)
    """
    if isinstance(value, (list, tuple)):
        ids = [path_identity(v) for v in value]
        return ids if any(i is not None for i in ids) else None
    if not isinstance(value, (str, os.PathLike)):
        return None
    path = Path(os.fspath(value)).expanduser()
    try:
        if path.is_file():
            return {"sha256": file_sha256(path), "size": path.stat().st_size}
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            return [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    except OSError:
        return None
    return None
