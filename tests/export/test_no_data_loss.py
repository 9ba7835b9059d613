"""xrembed never deletes or overwrites what it cannot prove it wrote (exports and the CLI).

Each case puts a user's own data where an export or the CLI would write, and checks that it is
refused with an error naming ``overwrite=True`` / ``--overwrite``, and that every byte is still there.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xrembed
import xrembed.testing  # noqa: F401  (dofa-tiny: registered by conftest.py)
from xrembed import ExportConfig, ExportModelRequest, ExportTarget, OutputSpec
from xrembed.cli import main as cli
from xrembed.errors import OptionError, OverwriteError

sys.path.insert(0, str(Path(__file__).parent))
from _export_scenario import spatials

TINY = [ExportModelRequest.configure("dofa-tiny", weights="random")]


def _export(target, fmt="zarr", output="pooled", **config):
    config = ExportConfig(format=fmt, show_progress=False, continue_on_error=True, **config)
    return xrembed.export_batch(spatials=spatials(2), temporal=None, models=TINY, target=target,
                                output=OutputSpec(output), config=config, source=xrembed.sample_path())


def _tree(path: Path) -> dict:
    """Every file under ``path`` (or ``path`` itself) with the sha1 of its bytes."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha1(p.read_bytes()).hexdigest() for p in files}


def _user_store(path: Path) -> Path:
    xr.Dataset({"precious": (("y", "x"), np.arange(12.0).reshape(3, 4))}).to_zarr(path, consolidated=False)
    return path


def test_an_existing_store_the_user_wrote_is_never_replaced(tmp_path):
    cube = _user_store(tmp_path / "cube.zarr")
    before = _tree(cube)
    with pytest.raises(OverwriteError, match=r"did not write it.*overwrite=True"):
        _export(ExportTarget.combined(cube))
    assert _tree(cube) == before
    # With resume=True too: xrembed must not write its groups into someone else's store.
    with pytest.raises(OverwriteError):
        _export(ExportTarget.combined(cube), resume=True)
    assert _tree(cube) == before
    assert not (tmp_path / "cube.json").exists()


def test_overwrite_true_replaces_it_and_the_next_run_needs_no_flag(tmp_path):
    cube = _user_store(tmp_path / "cube.zarr")
    _export(ExportTarget.combined(cube), overwrite=True)
    assert "precious" not in xr.open_zarr(cube, consolidated=False)
    assert xrembed.load_export(cube).status == "partial"  # the last ROI lies off the raster
    _export(ExportTarget.combined(cube))  # xrembed's own export now: replaced without a flag
    assert xrembed.load_export(cube).embedding("dofa-tiny").shape[0] == 3


def test_a_target_whose_suffix_is_another_format_is_refused(tmp_path):
    results = tmp_path / "results.nc"
    results.write_bytes(b"my netcdf results")
    with pytest.raises(OptionError, match=r"netcdf suffix.*format='netcdf'"):
        _export(ExportTarget.combined(results))
    assert results.read_bytes() == b"my netcdf results"
    with pytest.raises(OptionError, match="manifest"):
        _export(ExportTarget.combined(tmp_path / "results.json"))


@pytest.mark.parametrize("fmt", ["zarr", "netcdf", "npz"])
def test_a_json_beside_the_target_is_not_taken_for_the_manifest(tmp_path, fmt):
    suffix = {"zarr": ".zarr", "netcdf": ".nc", "npz": ".npz"}[fmt]
    notes = tmp_path / "emb.json"
    notes.write_text(json.dumps({"my": "notes"}))
    with pytest.raises(OverwriteError, match="manifest"):
        _export(ExportTarget.combined(tmp_path / f"emb{suffix}"), fmt=fmt)
    assert json.loads(notes.read_text()) == {"my": "notes"}
    assert not (tmp_path / f"emb{suffix}").exists()


@pytest.mark.parametrize("fmt", ["netcdf", "npz"])
def test_a_foreign_file_under_the_target_name_is_kept(tmp_path, fmt):
    suffix = {"netcdf": ".nc", "npz": ".npz"}[fmt]
    target = tmp_path / f"emb{suffix}"
    if fmt == "netcdf":
        xr.Dataset({"precious": ("x", np.arange(3.0))}).to_netcdf(target, engine="h5netcdf")
    else:
        np.savez(target, precious=np.arange(3.0))
    before = _tree(target)
    with pytest.raises(OverwriteError, match="overwrite=True"):
        _export(ExportTarget.combined(target), fmt=fmt)
    assert _tree(target) == before


@pytest.mark.parametrize("fmt", ["zarr", "netcdf", "npz", "geotiff"])
def test_exports_can_be_redone_because_xrembed_marks_what_it_writes(tmp_path, fmt):
    output = "grid" if fmt == "geotiff" else "pooled"
    target = ExportTarget.per_item(tmp_path / "out") if fmt == "geotiff" else ExportTarget.combined(tmp_path / f"e.{fmt}")
    _export(target, fmt=fmt, output=output)
    _export(target, fmt=fmt, output=output)  # no OverwriteError: every file there is xrembed's
    assert xrembed.load_export(target.path).status == "partial"


def test_per_item_exports_touch_only_their_own_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.txt").write_text("mine")
    (out / ".draft.tmp").write_text("mine too")  # looks like a temporary, but not one of xrembed's
    (out / "p00000.nc").write_text("a file the export would write, but the user's")
    before = _tree(out)
    with pytest.raises(OverwriteError, match="p00000.nc"):
        _export(ExportTarget.per_item(out), fmt="netcdf")
    assert _tree(out) == before
    (out / "p00000.nc").unlink()
    _export(ExportTarget.per_item(out), fmt="netcdf")
    _export(ExportTarget.per_item(out), fmt="netcdf")  # redone over its own files
    assert (out / "README.txt").read_text() == "mine" and (out / ".draft.tmp").read_text() == "mine too"


def test_a_symlink_to_user_data_is_not_followed(tmp_path):
    cube = _user_store(tmp_path / "cube.zarr")
    link = tmp_path / "emb.zarr"
    link.symlink_to(cube, target_is_directory=True)
    before = _tree(cube)
    with pytest.raises(OverwriteError):
        _export(ExportTarget.combined(link))
    assert _tree(cube) == before


def test_cli_never_wipes_a_folder_it_did_not_write(tmp_path, capsys):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "notes.md").write_text("two years of work")
    before = _tree(proj)
    args = ["embed", "sample", "--model", "dofa-tiny", "--weights", "random", "--out", str(proj), "--quiet"]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert "did not write it" in err and "--overwrite" in err and "Traceback" not in err
    assert _tree(proj) == before
    # xrembed's own output is replaced without a flag; someone else's only with --overwrite.
    out = tmp_path / "out.zarr"
    assert cli([*args[:-2], str(out), "--quiet"]) == 0
    assert cli([*args[:-2], str(out), "--quiet"]) == 0
    assert cli([*args, "--overwrite"]) == 0
    assert not (proj / "notes.md").exists()
    assert xr.open_zarr(proj)["embeddings"].sizes["embedding"] > 0


def test_an_unwritable_target_is_a_clear_error_before_any_work(tmp_path):
    from xrembed.errors import ExportError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="cannot write the export"):
        _export(ExportTarget.combined(blocker / "emb.zarr"))
    with pytest.raises(OptionError, match="is a file, not a folder"):
        _export(ExportTarget.per_item(blocker))
    assert blocker.read_text() == "not a folder"


def test_cli_reports_an_unwritable_out_without_traceback(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out.zarr"
    assert cli(["embed", "sample", "--model", "dofa-tiny", "--weights", "random", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "xrembed: error:" in err and "a-file" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def test_the_format_writers_refuse_a_foreign_file_too(tmp_path):
    from xrembed.export.formats import write_combined, write_item

    vec = xr.DataArray(np.arange(4.0, dtype="float32"), dims="embedding", name="embeddings")
    mine = tmp_path / "p0.npz"
    np.savez(mine, precious=np.arange(3.0))
    before = _tree(mine)
    with pytest.raises(OverwriteError):
        write_item(tmp_path, "p0", {"m": vec}, "npz")
    with pytest.raises(OverwriteError):
        write_combined(mine, ["p0"], {"m": {"p0": vec}}, "npz")
    assert _tree(mine) == before
    write_item(tmp_path, "p0", {"m": vec}, "npz", overwrite=True)
    write_item(tmp_path, "p0", {"m": vec}, "npz")  # now xrembed's own file


def test_cli_output_piped_into_a_reader_that_left_ends_quietly():
    import subprocess

    # `true` exits at once: by the time xrembed prints, the pipe is closed (EPIPE).
    cmd = f"set -o pipefail; {sys.executable} -m xrembed.cli models --describe dofa | true"
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr
