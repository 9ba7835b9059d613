"""xrembed's cache: where downloaded files live, how they are downloaded, and how files are written safely.

One module so that every download (model weights from the Hugging Face Hub or a plain URL, product indexes)
honours the same cache folder and the same offline switch, and every file xrembed writes for later reading
(manifests, marks, exported items, cached downloads) is written the same atomic way, with its values made
JSON-plain by one converter (:func:`jsonable`, also used for the attrs of every result).

Environment variables (configuration through arguments everywhere else):

``XREMBED_CACHE``
    the cache folder (default ``$XDG_CACHE_HOME/xrembed``, else ``~/.cache/xrembed``).
``XREMBED_OFFLINE``, ``HF_HUB_OFFLINE``
    either one set to a true value (``1``, ``true``, ``yes``, ``on``) means: download nothing.

Nothing here imports torch; ``huggingface_hub`` is imported only when the Hub is used.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "NETWORK_PROBE_TIMEOUT_S",
    "ChecksumError",
    "atomic_path",
    "cache_dir",
    "cache_root",
    "download_hub_file",
    "download_url",
    "hub_endpoint",
    "is_offline",
    "jsonable",
    "offline_reason",
    "sha256_of",
]

#: Seconds a host has to answer one TCP connect before xrembed calls the network missing.
NETWORK_PROBE_TIMEOUT_S = 3.0

_TRUTHY = ("1", "true", "yes", "on")
_CHUNK = 1 << 20


class ChecksumError(OSError):
    """A downloaded file does not have the sha256 its publisher gives (a corrupt or replaced file)."""


# --------------------------------------------------------------------------------------------- JSON values


def jsonable(value: Any) -> Any:
    """A JSON-friendly rendering of specs, numpy scalars and arrays, paths and containers (tuples become lists).

    The one converter for everything xrembed writes as JSON: manifests, marks, and the attrs of exported files.
    """
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return [jsonable(v) for v in value.tolist()]
    if is_dataclass(value) and not isinstance(value, type):
        fields = {k: jsonable(v) for k, v in asdict(value).items() if k != "extra"}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalar
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


# --------------------------------------------------------------------------------------------- folders


def cache_root() -> Path:
    """xrembed's cache folder: ``$XREMBED_CACHE``, else ``$XDG_CACHE_HOME/xrembed``, else ``~/.cache/xrembed``.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"XREMBED_CACHE": "/tmp/xrembed-cache"}):
    ...     str(cache_root())
    '/tmp/xrembed-cache'
    """
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xrembed"
    return Path(os.environ.get("XREMBED_CACHE", default))


def cache_dir(kind: str = "weights") -> Path:
    """The cache sub-folder for one kind of file: ``weights`` (published outside the Hub), ``gse``, ...

    Examples
    --------
    >>> cache_dir("gse").name
    'gse'
    """
    return cache_root() / kind


# --------------------------------------------------------------------------------------------- offline


def is_offline() -> bool:
    """Whether an offline switch is on: ``XREMBED_OFFLINE`` or ``HF_HUB_OFFLINE`` (as set now, or as the Hub
    read it when it was imported).

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"XREMBED_OFFLINE": "1"}):
    ...     is_offline()
    True
    """
    for name in ("XREMBED_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUTHY:
            return True
    import huggingface_hub.constants

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def offline_reason(url: str) -> str | None:
    """Why ``url`` cannot be downloaded now (an offline switch, no DNS, no route), or ``None`` if it may be.

    One DNS lookup and TCP connect, bounded by :data:`NETWORK_PROBE_TIMEOUT_S`, so that a machine without
    network is told at once rather than after the download library's retries with backoff (~25 s for the
    Hub). Behind a configured proxy nothing is probed: the proxy decides what is reachable.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"XREMBED_OFFLINE": "1"}):
    ...     offline_reason("https://zenodo.org/record/1/files/w.pth")
    'offline mode is on (HF_HUB_OFFLINE or XREMBED_OFFLINE is set)'
    """
    import socket
    import threading
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    if is_offline():
        return "offline mode is on (HF_HUB_OFFLINE or XREMBED_OFFLINE is set)"
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return None
    proxies = getproxies()
    if (proxies.get(parts.scheme) or proxies.get("all")) and not proxy_bypass(host):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=NETWORK_PROBE_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(f"{host} cannot be reached ({type(err).__name__}: {err})")

    # In a thread: the DNS lookup inside create_connection has no timeout of its own.
    thread = threading.Thread(target=probe, name="xrembed-network-probe", daemon=True)
    thread.start()
    thread.join(NETWORK_PROBE_TIMEOUT_S + 0.5)
    return outcome[0] if outcome else f"{host} did not answer within {NETWORK_PROBE_TIMEOUT_S:g} s"


# --------------------------------------------------------------------------------------------- atomic files


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place on success, remove it on failure.

    Readers see the old file or the new one, never a torn one: a process killed at any moment leaves at
    most a hidden ``.<name>.tmp-*`` file behind, never a truncated ``path``. The temporary name keeps the
    suffix, so writers that pick a format by suffix (NetCDF, GeoTIFF) still work.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:12]}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------------------------- downloads


def sha256_of(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def download_url(
    url: str,
    target: str | os.PathLike,
    *,
    sha256: str | None = None,
    check: Callable[[Path], None] | None = None,
    timeout: float = 120,
    progress: bool = False,
) -> Path:
    """Download ``url`` to ``target`` atomically, checking its sha256 when one is given.

    ``check`` is called on the downloaded file before it is moved into place (e.g. "is it a readable
    checkpoint?" where no checksum is published); whatever it raises propagates and nothing is left at
    ``target``. Network errors propagate as :class:`OSError` (``urllib.error.URLError`` is one); a wrong
    checksum raises :class:`ChecksumError`. Callers turn these into their own error with the fix for their
    file. The offline switch is the caller's to check (with :func:`offline_reason`), so that its message can
    name the file.
    """
    import urllib.request

    target = Path(target)
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp, open(tmp, "wb") as f:
        bar = _progress_bar(response, target.name) if progress else None
        while block := response.read(_CHUNK):
            f.write(block)
            digest.update(block)
            if bar is not None:
                bar.update(len(block))
        if bar is not None:
            bar.close()
        f.flush()
        os.fsync(f.fileno())
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise ChecksumError(
                f"{url} has sha256 {digest.hexdigest()}, not the published {sha256.lower()}: the download is "
                "corrupt or the file was replaced."
            )
        if check is not None:
            check(tmp)
    return target


def _progress_bar(response, name: str):
    from tqdm.auto import tqdm

    total = response.headers.get("Content-Length")
    return tqdm(total=int(total) if total else None, unit="B", unit_scale=True, desc=name)


def download_hub_file(repo_id: str, filename: str, *, revision: str | None = None, cached_only: bool = False) -> str:
    """A file from the Hugging Face Hub, through its own cache (``HF_HOME``); returns the local path.

    ``cached_only=True`` looks in the Hub cache without any network round trip (and raises if absent).
    """
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, filename, revision=revision, local_files_only=cached_only)


def hub_endpoint() -> str:
    """The Hugging Face Hub URL (``HF_ENDPOINT``), for :func:`offline_reason`."""
    import huggingface_hub.constants

    return huggingface_hub.constants.ENDPOINT
