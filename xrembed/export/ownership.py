"""Proof that xrembed wrote a path, checked before anything there is replaced or removed.

xrembed overwrites or deletes only what carries its own mark; anything else is refused with
:class:`~xrembed.errors.OverwriteError` unless the caller says ``overwrite=True`` (``--overwrite``).
The mark lives *inside* what was written, so it travels with copies and cannot be left behind by a
user's own file of the same name:

=================  ==========================================================================
what               the mark
=================  ==========================================================================
Zarr store         root group attribute ``xrembed_export`` (``zarr.json`` or ``.zattrs``)
NetCDF file        root attribute ``xrembed_export``
npz file           the array ``xrembed_export``
GeoTIFF            the dataset tag ``xrembed_export``
manifest JSON      the key ``xrembed_export``
state folder       the file ``state.json`` holding the key ``xrembed_export``
=================  ==========================================================================

Files are recognised by their content (HDF5, zip, TIFF magic), not by their suffix.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import OverwriteError

#: Name of the attribute, key or tag that marks what xrembed wrote.
MARK = "xrembed_export"
STATE_FILE = "state.json"

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def mark(kind: str) -> str:
    """The mark's value: which xrembed wrote what (a JSON string, so that every format can hold it)."""
    from .._version import __version__

    return json.dumps({"writer": "xrembed", "version": __version__, "kind": kind}, sort_keys=True)


def is_owned(path: str | os.PathLike) -> bool:
    """Whether ``path`` carries xrembed's mark. A missing path is not owned (there is nothing to prove)."""
    path = Path(path)
    try:
        if path.is_symlink():
            return False  # never follow a link into someone else's data
        if path.is_dir():
            return _dir_owned(path)
        if path.is_file():
            return _file_owned(path)
    except OSError:
        return False
    return False


def _dir_owned(path: Path) -> bool:
    for name in ("zarr.json", ".zattrs", STATE_FILE):
        meta = _read_json(path / name)
        if isinstance(meta, dict):
            attrs = meta.get("attributes", meta) if name == "zarr.json" else meta
            if isinstance(attrs, dict) and MARK in attrs:
                return True
    return False


def _file_owned(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_HDF5_MAGIC):
        import h5py

        with h5py.File(path, "r") as h5:
            return MARK in h5.attrs
    if head.startswith(_ZIP_MAGIC):
        import zipfile

        with zipfile.ZipFile(path) as z:
            return f"{MARK}.npy" in z.namelist()
    if head[:4] in _TIFF_MAGICS:
        import rasterio

        with rasterio.open(path) as src:
            return MARK in src.tags()
    meta = _read_json(path)
    return isinstance(meta, dict) and MARK in meta


def _read_json(path: Path):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read(4 * 2**20))
    except (OSError, ValueError):
        return None


def _empty_dir(path: Path) -> bool:
    """An empty folder holds nothing to lose (users often ``mkdir`` the target first)."""
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def describe(path: Path) -> str:
    """A short account of what is at ``path``, for error messages."""
    if path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        return f"a folder with {len(entries)} entries ({shown})" if entries else "an empty folder"
    try:
        return f"a file of {path.stat().st_size:,} bytes"
    except OSError:
        return "something xrembed cannot inspect"


def check_replaceable(path: str | os.PathLike, *, overwrite: bool, what: str, flag: str = "overwrite=True") -> bool:
    """Refuse to touch ``path`` if it exists and xrembed cannot prove it wrote it (unless ``overwrite``).

    Returns whether something is there that may be replaced. ``what`` names the path's role in the
    message ("export target", "manifest"); ``flag`` names the way to say "replace it anyway".
    """
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return False
    if overwrite or is_owned(path) or _empty_dir(path):
        return True
    raise OverwriteError(
        f"the {what} {path} already exists and xrembed did not write it ({describe(path)}); it was left "
        f"untouched. Choose another path, or pass {flag} to replace it."
    )


def remove(path: str | os.PathLike, *, overwrite: bool, what: str, flag: str = "overwrite=True") -> None:
    """Remove ``path`` (file, link or folder) after :func:`check_replaceable` allows it."""
    path = Path(path)
    if not check_replaceable(path, overwrite=overwrite, what=what, flag=flag):
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def mark_zarr(store: str | os.PathLike, kind: str) -> None:
    """Create (or open) the root group of a Zarr store and put xrembed's mark on it."""
    import zarr

    root = zarr.open_group(store, mode="a")
    if MARK not in root.attrs:
        root.attrs[MARK] = mark(kind)


def mark_state(state_dir: str | os.PathLike) -> None:
    """Create an export's state folder with the file that marks it as xrembed's."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    if not is_owned(state_dir):
        from .manifest import write_json_atomic

        write_json_atomic(state_dir / STATE_FILE, {MARK: mark("export-state")})
