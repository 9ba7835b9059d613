"""Embedding many rasters (ROIs) at once: one model load, concurrent fetch, shared forward passes.

:func:`iter_embed` takes *openers* (callables returning a lazy raster, e.g. an Earth Engine composite of
one ROI) and yields one :class:`ItemOutcome` per raster, in completion order:

1. A thread pool opens each raster, validates it against the model (bands, CRS, options: exactly the
   checks of ``.rsembed.embed``) and reads the bands the model needs. At most ``prefetch`` rasters are
   held in memory ahead of the model, so a long list of ROIs does not pile up in RAM.
2. Rasters whose requests share a signature (``embedding._Request.signature``: same model, plan, shape
   and pixel size; any CRS or place) are stacked, and the tiles of the whole stack go through the
   model together, ``batch_size`` tiles per forward pass. Tiles are cut in each raster's own pixel
   space, so a stacked raster gets exactly the values it gets alone.
3. Rasters larger than ``max_stack_px`` pixels are not read here: their outcome holds the lazy
   result, to be computed or streamed (to Zarr) chunk by chunk by the caller.

A raster that fails (fetch, validation, or its values) is reported in its own outcome, with the error;
only transient fetch errors (:func:`is_transient`: timeouts, dropped connections, HTTP 429/5xx) are
retried, with exponential backoff. Anything else (a missing file, a bad option, any contract error) fails
on its first attempt: it would fail again.
"""

from __future__ import annotations

import difflib
import errno
import math
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import xarray as xr

from . import embedding, engine
from .errors import OptionError, SourceError, XrembedError
from .options import EmbedOptions

#: Inputs above this many pixels (per band and time step) stay lazy and stream chunk by chunk.
MAX_STACK_PX = 2048 * 2048


#: Errors that are never network hiccups: local files, and programming or contract errors.
_LOCAL_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
_NEVER_TRANSIENT = (TypeError, ValueError, LookupError, AttributeError, NotImplementedError, AssertionError,
                    ArithmeticError, ImportError, MemoryError)
_NETWORK_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "ETIMEDOUT", "EHOSTUNREACH",
                                      "EHOSTDOWN", "ENETUNREACH", "ENETDOWN", "ENETRESET", "EPIPE")
    if hasattr(errno, name)
)
#: Class names (anywhere in the MRO) of the network errors of requests, urllib3, httpx and aiohttp, matched
#: by name so that none of them has to be imported.
_TRANSIENT_CLASS_NAMES = frozenset({
    "Timeout", "TimeoutError", "TimeoutException", "ReadTimeout", "ConnectTimeout", "ConnectionError",
    "ProtocolError", "NetworkError", "RemoteProtocolError", "ChunkedEncodingError", "IncompleteRead",
    "ClientConnectionError", "ServerDisconnectedError",
})
#: What servers say when they are busy or briefly failing (Earth Engine's messages carry no status code).
_TRANSIENT_TEXT = re.compile(
    r"too many (concurrent )?(requests|aggregations)|rate.?limit|capacity exceeded|timed? ?out|"
    r"temporar(il)?y unavailable|service unavailable|internal (server )?error|bad gateway|gateway time|"
    r"connection (reset|refused|aborted|closed)|broken pipe|try again|"
    r"\b(?:http|status|code|response)\D{0,20}(?:408|429|50[0-4])\b",
    re.IGNORECASE,
)


def is_transient(error: BaseException, _depth: int = 0) -> bool:
    """Whether retrying may help: timeouts, dropped connections, HTTP 408/429/5xx and servers' "busy" messages.

    Never: xrembed's contract errors (unless they wrap a transient cause, or set ``transient = True``), local
    file errors (missing, permission, wrong kind), and programming errors (``TypeError``, ``ValueError``,
    ``KeyError``, ...). An error with an HTTP status code is judged by the code alone.
    """
    if isinstance(error, XrembedError):
        if getattr(error, "transient", False):
            return True
        # Only xrembed's plain wrappers of a source failure pass on their cause; a contract error stays one.
        return type(error) in (XrembedError, SourceError) and _cause_is_transient(error, _depth)
    status = _status_code(error)
    if status is not None:
        return status in (408, 429) or 500 <= status < 600
    if isinstance(error, _LOCAL_OS_ERRORS):
        return False
    if isinstance(error, (TimeoutError, ConnectionError)):  # socket.timeout is TimeoutError
        return True
    if isinstance(error, socket.gaierror):
        return error.errno == getattr(socket, "EAI_AGAIN", -3)  # "temporary failure", not an unknown host
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in _NETWORK_ERRNOS
    if any(cls.__name__ in _TRANSIENT_CLASS_NAMES for cls in type(error).__mro__):
        return True
    if isinstance(error, _NEVER_TRANSIENT):
        return False
    if _TRANSIENT_TEXT.search(str(error)):
        return True
    return _cause_is_transient(error, _depth)


def _cause_is_transient(error: BaseException, depth: int) -> bool:
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return cause is not None and depth < 5 and is_transient(cause, depth + 1)


def _status_code(error: BaseException) -> int | None:
    """The HTTP status an error carries (requests/httpx ``response.status_code``, googleapiclient
    ``resp.status``, urllib ``code``, aiohttp ``status``), if any."""
    candidates = (
        getattr(getattr(error, "response", None), "status_code", None),
        getattr(getattr(error, "resp", None), "status", None),
        getattr(error, "status_code", None),
        getattr(error, "status", None),
        getattr(error, "code", None),
    )
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value < 600:
            return value
    return None


#: The model keywords of ``embed()`` (the product-only ones are refused with their own message).
EMBED_KEYWORDS = tuple(EmbedOptions().model_keywords())
_PRODUCT_KEYWORDS = EmbedOptions.PRODUCT_ONLY


def check_embed_keywords(kwargs: Mapping[str, Any], *, extra: Sequence[str] = (), where: str = "embed") -> None:
    """Refuse keywords that ``embed()`` would not take, naming the closest one, before anything is fetched
    (a typo such as ``batchsize=`` would otherwise fail as a ``TypeError`` inside each raster's fetch)."""
    allowed = (*EMBED_KEYWORDS, *extra)
    for name in kwargs:
        if name in allowed:
            continue
        if name in _PRODUCT_KEYWORDS:
            raise OptionError(
                f"{name}= applies to precomputed products (tessera, gse, copernicus_embed), not to models."
            )
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]}=?" if close else ""
        raise OptionError(f"{name}= is not a keyword of {where}.{hint} Its model keywords are {sorted(allowed)}.")


def check_model_config(model: str, config: Mapping[str, Any] | None, *, where: str = "embed") -> None:
    """Check per-model keywords (``ExportModelRequest.configure(name, **config)``) once, up front."""
    from .sources.precomputed import check_product_options, is_product

    if is_product(model):
        check_product_options(model, **dict(config or {}))
    else:
        check_embed_keywords(config or {}, where=where)


class BatchItemError(XrembedError):
    """One raster of a batch failed; ``index`` says which."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


@dataclass
class ItemOutcome:
    """The result of one raster: ``result`` (computed, or lazy when ``streamed``) or the ``error``."""

    index: int
    result: xr.DataArray | None = None
    error: BaseException | None = None
    attempts: int = 0
    streamed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Fetched:
    index: int
    request: Any  # embedding._Request, data read into memory unless ``lazy``
    attempts: int
    lazy: bool


def iter_embed(
    openers: Sequence[Callable[[], xr.DataArray | xr.Dataset]],
    model: str,
    *,
    num_workers: int = 4,
    max_retries: int = 0,
    retry_backoff_s: float = 0.0,
    prefetch: int | None = None,
    max_stack_px: int | None = None,
    tiles_per_chunk: int = 4,
    **embed_kwargs,
) -> Iterator[ItemOutcome]:
    """Embed many rasters with one model; yield an :class:`ItemOutcome` per raster as it completes.

    ``embed_kwargs`` are those of :meth:`~xrembed.accessor.RSEmbedAccessor.embed` (``output``,
    ``input_prep``, ``bands``, ``variant``, ``weights``, ``batch_size``, ...).
    """
    if not isinstance(num_workers, int) or num_workers < 1:
        raise OptionError(f"num_workers must be a positive integer, got {num_workers!r}.")
    if not isinstance(max_retries, int) or max_retries < 0:
        raise OptionError(f"max_retries must be a non-negative integer, got {max_retries!r}.")
    if retry_backoff_s < 0:
        raise OptionError(f"retry_backoff_s must be >= 0, got {retry_backoff_s!r}.")
    check_embed_keywords(embed_kwargs, where="embed_many/iter_embed")
    from .sources.precomputed import is_product

    if is_product(model):
        raise OptionError(f"{model!r} is a precomputed product; open it with xrembed.open_precomputed.")
    # What is wrong for every raster (model, variant, weights) is raised now, once, not per item.
    from .models.registry import get_adapter
    from .models.weights import resolve_weights

    options = EmbedOptions.from_kwargs(embed_kwargs, where="embed_many/iter_embed")
    weights = resolve_weights(get_adapter(model, options.variant), options.weights)
    prefetch = prefetch or max(2 * num_workers, 8)
    max_stack_px = MAX_STACK_PX if max_stack_px is None else max_stack_px
    fetch = _Fetcher(model, options, weights, max_retries, retry_backoff_s, max_stack_px)
    buckets: dict[tuple, list[_Fetched]] = {}

    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="xrembed-fetch") as pool:
        pending: deque[Future] = deque()
        queue = iter(enumerate(openers))

        def top_up() -> None:
            while len(pending) < prefetch:
                try:
                    index, opener = next(queue)
                except StopIteration:
                    return
                pending.append(pool.submit(fetch, index, opener))

        top_up()
        while pending:
            item = pending.popleft().result()
            top_up()
            if isinstance(item, ItemOutcome):  # failed to fetch or validate
                yield item
                continue
            if item.lazy:
                yield _lazy_outcome(item, tiles_per_chunk)
                continue
            signature = item.request.signature()
            bucket = buckets.setdefault(signature, [])
            bucket.append(item)
            if len(bucket) >= _stack_size(item.request):
                yield from _embed_stack(buckets.pop(signature), tiles_per_chunk)
        for bucket in buckets.values():
            yield from _embed_stack(bucket, tiles_per_chunk)


def embed_many(openers, model: str, *, continue_on_error: bool = False, **kwargs) -> list[ItemOutcome]:
    """:func:`iter_embed`, collected in input order; lazy (large) results are computed here.

    Without ``continue_on_error``, the first failing raster raises :class:`BatchItemError`.
    """
    outcomes: list[ItemOutcome | None] = [None] * len(openers)
    for outcome in iter_embed(openers, model, **kwargs):
        if outcome.ok and outcome.streamed:
            try:
                outcome.result = outcome.result.compute()
            except Exception as err:  # noqa: BLE001  (per-item failure; the pixels are read only now)
                outcome.error, outcome.result = err, None
        if not outcome.ok and not continue_on_error:
            raise BatchItemError(
                f"ROI {outcome.index} failed after {outcome.attempts} attempt(s): {str(outcome.error).rstrip('.')}. "
                "Pass continue_on_error=True to get the other results (failures are reported per item), "
                "or max_retries= for transient errors.",
                outcome.index,
            ) from outcome.error
        outcomes[outcome.index] = outcome
    return outcomes  # type: ignore[return-value]


class _Fetcher:
    """Open, validate and read one raster, with retries (runs in a worker thread)."""

    def __init__(self, model, options, weights, max_retries, retry_backoff_s, max_stack_px) -> None:
        self.model, self.options, self.weights = model, options, weights
        self.max_retries, self.retry_backoff_s, self.max_stack_px = max_retries, retry_backoff_s, max_stack_px

    def __call__(self, index: int, opener) -> _Fetched | ItemOutcome:
        attempts = 0
        while True:
            attempts += 1
            try:
                obj = opener() if callable(opener) else opener
                request = embedding._prepare(obj, self.model, self.options, weights_source=self.weights)
                data = request.data
                if data.sizes["y"] * data.sizes["x"] > self.max_stack_px:
                    return _Fetched(index, request, attempts, lazy=True)
                # Read only the bands the model uses; this thread's dask work stays in this thread.
                loaded = data.load(scheduler="synchronous")
                return _Fetched(index, replace(request, data=loaded), attempts, lazy=False)
            except Exception as err:  # noqa: BLE001  (fetch errors vary by source: reported per item)
                if attempts > self.max_retries or not is_transient(err):
                    return ItemOutcome(index, error=err, attempts=attempts)
                time.sleep(self.retry_backoff_s * 2 ** (attempts - 1))


def _stack_size(request) -> int:
    """Rasters per stack: enough tiles to fill a few forward passes, a bounded amount of memory."""
    v = request.adapter.variant
    if request.input_prep == "tile":
        tiles = math.ceil(request.data.sizes["y"] / v.image_size) * math.ceil(request.data.sizes["x"] / v.image_size)
    else:
        tiles = 1
    frames = int(np.prod([request.data.sizes[d] for d in request.extra])) if request.extra else 1
    return max(1, min(64, math.ceil(4 * request.batch_size / max(1, tiles * frames))))


def _embed_stack(items: list[_Fetched], tiles_per_chunk: int) -> Iterable[ItemOutcome]:
    """Embed rasters with one signature in shared forward passes; isolate failures item by item."""
    if len(items) > 1:
        # Value checks look at a whole block (e.g. its peak): run them per raster, so that one normalised
        # raster cannot hide among raw ones, then stack only those that pass.
        passed = []
        for item in items:
            try:
                item.request.adapter.check_values(_valid_values(item.request), item.request.plan)
                passed.append(item)
            except Exception as err:  # noqa: BLE001  (reported per item)
                yield ItemOutcome(item.index, error=err, attempts=item.attempts)
        items = passed
        if not items:
            return
    first = items[0].request
    try:
        if len(items) == 1:
            values = [embedding._compute(first, first.data.values, tiles_per_chunk)]
        else:
            stacked = np.stack([item.request.data.values for item in items])
            values = list(embedding._compute(first, stacked, tiles_per_chunk))
    except Exception as err:  # noqa: BLE001  (reported per item, never dropped)
        if len(items) == 1:
            yield ItemOutcome(items[0].index, error=err, attempts=items[0].attempts)
            return
        # One bad raster (e.g. out-of-range values) must not fail its neighbours: retry alone.
        for item in items:
            yield from _embed_stack([item], tiles_per_chunk)
        return
    for item, value in zip(items, values):
        yield ItemOutcome(item.index, result=embedding._wrap(item.request, value), attempts=item.attempts)


def _valid_values(request) -> np.ndarray:
    """The raster's pixels as ``(N, C, H, W)``, nodata as NaN (no copy when there is no nodata value)."""
    values = np.asarray(request.data.values)
    values = values.reshape((-1,) + values.shape[-3:])
    return engine.mask_nodata(values, request.nodata)  # nodata is per band


def _lazy_outcome(item: _Fetched, tiles_per_chunk: int) -> ItemOutcome:
    request = item.request
    result = embedding._wrap(request, embedding._compute(request, embedding._as_array(request.data), tiles_per_chunk))
    return ItemOutcome(item.index, result=result, attempts=item.attempts, streamed=True)
