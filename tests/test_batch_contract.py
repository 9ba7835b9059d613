"""The retry loop retries only transient errors (timeouts, resets, 429/5xx); a missing file, a typo'd keyword or
any contract error fails on the first attempt, and a typo'd keyword is refused before anything is fetched."""

import errno
import socket
import urllib.error

import pytest
import rasterio.errors
import requests

import xrembed
import xrembed.testing  # noqa: F401  (dofa-tiny: registered by conftest.py)
from xrembed import errors
from xrembed.batch import embed_many, is_transient
from xrembed.testing import synthetic_raster


def _http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} for url https://example.org/tile", response=response)


def _ee_error(message: str):
    ee = pytest.importorskip("ee")
    return ee.EEException(message)


def _wrapped(cause: BaseException, kind=errors.XrembedError) -> BaseException:
    try:
        raise kind("Earth Engine refused the request: ...") from cause
    except kind as err:
        return err


TRANSIENT = [
    TimeoutError("read timed out"),
    socket.timeout("timed out"),
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    ConnectionError("Earth Engine: too many concurrent requests"),
    OSError(errno.ENETUNREACH, "Network is unreachable"),
    socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
    requests.ConnectionError("Connection aborted."),
    requests.Timeout("read timeout"),
    _http_error(429),
    _http_error(503),
    urllib.error.HTTPError("https://example.org", 502, "Bad Gateway", {}, None),
    rasterio.errors.RasterioIOError("HTTP response code: 503"),
]
PERMANENT = [
    FileNotFoundError(errno.ENOENT, "No such file or directory", "scene.tif"),
    PermissionError(errno.EACCES, "Permission denied", "scene.tif"),
    IsADirectoryError(errno.EISDIR, "Is a directory", "scenes/"),
    NotADirectoryError(errno.ENOTDIR, "Not a directory", "scene.tif/B04.tif"),
    TypeError("open() got an unexpected keyword argument 'batchsize'"),
    ValueError("bad value"),
    KeyError("B04"),
    _http_error(404),
    _http_error(403),
    urllib.error.HTTPError("https://example.org", 404, "Not Found", {}, None),
    rasterio.errors.RasterioIOError("scene.tif: No such file or directory"),
    errors.XrembedError("raster 'scene.tif' does not exist"),
    errors.SourceError("raster 'scene.tif' does not exist"),
    errors.OptionError("bad option"),
    errors.InputRangeError("values look normalised"),
    errors.StoreError("torn chunk"),
    _wrapped(FileNotFoundError(errno.ENOENT, "No such file")),
    _wrapped(TimeoutError("timed out"), errors.BandMismatchError),  # a contract error stays one
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: f"{type(e).__name__}:{e}"[:60])
def test_transient_errors_are_recognised(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: f"{type(e).__name__}:{e}"[:60])
def test_other_errors_are_not_retried(error):
    assert not is_transient(error)


def test_earth_engine_errors_by_message():
    assert is_transient(_ee_error("Too many concurrent aggregations."))
    assert is_transient(_ee_error("Earth Engine capacity exceeded."))
    assert is_transient(_ee_error("An internal error has occurred (request: 1234)."))
    assert is_transient(_wrapped(_ee_error("Too Many Requests")))  # xrembed's wrapper keeps the cause
    assert not is_transient(_ee_error("Image.select: Pattern 'B99' did not match any bands."))
    assert not is_transient(_ee_error("Collection asset 'COPERNICUS/S3' not found."))


@pytest.fixture
def sleeps(monkeypatch):
    calls = []
    monkeypatch.setattr("xrembed.batch.time.sleep", calls.append)
    return calls


def test_a_missing_input_file_fails_on_the_first_attempt(sleeps, tmp_path):
    missing = tmp_path / "scene.tif"
    outcome = embed_many([lambda: xrembed.open_raster(missing)], "dofa-tiny", weights="random", max_retries=3,
                         retry_backoff_s=1.0, continue_on_error=True)[0]
    assert not outcome.ok and outcome.attempts == 1 and sleeps == []
    assert isinstance(outcome.error, errors.XrembedError)


@pytest.mark.parametrize("error", [FileNotFoundError(errno.ENOENT, "No such file"), TypeError("unexpected keyword")])
def test_non_transient_errors_of_an_opener_are_not_retried(sleeps, error):
    calls = []

    def opener():
        calls.append(1)
        raise error

    outcome = embed_many([opener], "dofa-tiny", weights="random", max_retries=3, retry_backoff_s=1.0,
                         continue_on_error=True)[0]
    assert outcome.attempts == 1 and calls == [1] and sleeps == [] and outcome.error is error


def test_http_503_is_retried_and_then_succeeds(sleeps):
    raster = synthetic_raster((32, 32))
    left = {"n": 2}

    def opener():
        if left["n"]:
            left["n"] -= 1
            raise _http_error(503)
        return raster

    outcome = embed_many([opener], "dofa-tiny", weights="random", max_retries=3, retry_backoff_s=0.25)[0]
    assert outcome.ok and outcome.attempts == 3 and sleeps == [0.25, 0.5]


# --- a typo'd keyword -------------------------------------------------------------------------------------------


def test_typo_keyword_is_an_option_error_before_any_fetch():
    opened = []
    with pytest.raises(errors.OptionError, match=r"batchsize=.*batch_size") as info:
        embed_many([lambda: opened.append(1)], "dofa-tiny", weights="random", batchsize=8, max_retries=3)
    assert opened == [] and not isinstance(info.value, TypeError)


def test_functional_api_typo_keyword_fails_before_the_source_is_read(tmp_path):
    roi = xrembed.PointBuffer(-9.5, 25.0, 320)
    missing = tmp_path / "scene.tif"  # reading it would fail differently
    for lazy in (False, True):
        with pytest.raises(errors.OptionError, match=r"batchsize=.*batch_size"):
            xrembed.get_embedding("dofa-tiny", spatial=roi, source=str(missing), weights="random", batchsize=8,
                                  lazy=lazy)


def test_export_model_config_typo_fails_before_anything_is_written(tmp_path):
    from xrembed.export.types import ExportModelRequest, ExportTarget

    target = tmp_path / "out.zarr"
    with pytest.raises(errors.OptionError, match=r"batchsize=.*batch_size"):
        xrembed.export_batch(
            spatials=[xrembed.PointBuffer(-9.5, 25.0, 320)], temporal=None, source=str(tmp_path / "scene.tif"),
            models=[ExportModelRequest.configure("dofa-tiny", weights="random", batchsize=8)],
            target=ExportTarget.combined(str(target)),
        )
    assert list(tmp_path.iterdir()) == []  # no target, no state folder, no manifest


def test_export_refuses_model_keywords_for_a_product_up_front(tmp_path):
    from xrembed.export.types import ExportModelRequest, ExportTarget

    with pytest.raises(errors.OptionError, match=r"weights=.*precomputed product"):
        xrembed.export_batch(
            spatials=[xrembed.BBox(0.1, 52.1, 0.2, 52.2)], temporal=None,
            models=[ExportModelRequest.configure("copernicus_embed", weights="/some/file.pth")],
            target=ExportTarget.combined(str(tmp_path / "out.zarr")),
        )
    assert list(tmp_path.iterdir()) == []
