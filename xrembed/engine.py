"""Running a model over raster blocks: the per-process model cache, batching, tiling and stitching.

Everything here works on plain numpy blocks laid out ``(..., band, y, x)``; :mod:`xrembed.embedding`
wraps these functions in a dask graph (``dask.array.map_blocks``) or calls them directly for numpy input,
so the lazy and eager paths share every line of arithmetic.

The graph carries only a small, hashable :class:`ModelKey` and :class:`~xrembed.models.base.InputPlan`;
the model itself is loaded by :func:`get_runtime` at most once per process (worker) and never pickled.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass

import numpy as np

from . import tiling
from .errors import OptionError
from .models.base import InputPlan
from .models.weights import WeightsSource, load_module
from .options import PRECISIONS  # noqa: F401  (re-exported: engine.PRECISIONS was public)


@dataclass(frozen=True)
class ModelKey:
    """Everything that identifies a loaded model in a process."""

    model_id: str
    variant: str
    #: ``"module:Class"`` of the adapter, so worker processes find models registered at run time.
    adapter: str
    weights_path: str | None
    weights_label: str
    device: str
    precision: str = "fp32"


class Runtime:
    """A loaded model on a device, with a lock so threads take turns on the forward pass.

    Serialising forwards lets torch use all cores (or the whole GPU) for one batch at a time while
    dask threads read and prepare the next blocks, instead of oversubscribing the CPU.
    """

    def __init__(self, key: ModelKey) -> None:
        import torch

        self.key = key
        # A device chosen on a client that runs its graphs elsewhere is checked here, where the model runs.
        self.device = torch.device(check_device(key.device, where="the process running the model"))
        self.adapter = _import_adapter(key.adapter)(key.variant)
        module = load_module(self.adapter, WeightsSource(key.weights_path, key.weights_label))
        if key.precision == "int8":
            if self.device.type != "cpu":
                raise OptionError(
                    f"precision='int8' (dynamic quantisation) runs on CPU only, not on {key.device}; on a GPU use "
                    "precision='fp16' or 'bf16'."
                )
            module = quantize_linear(module)
        self.module = module.to(self.device)
        if _COMPILE["enabled"]:
            self.module = torch.compile(self.module, dynamic=True)
        self.lock = threading.Lock()
        self.weights_stamp: tuple[int, int] | None = None  # set by get_runtime
        self._autocast_dtype = {"fp32": None, "int8": None, "bf16": torch.bfloat16, "fp16": torch.float16}[key.precision]

    def prepare(self, images, plan: InputPlan, nodata: tuple | float | None = None):
        """Normalise raw images (a tensor); invalid pixels become the band mean (0 after standardising).

        No NaN ever enters the network; the cells they cover are set to NaN after the forward pass.
        ``nodata`` is given for images still in their storage dtype (:func:`raw_uploads`): each band's nodata
        becomes NaN here, on the device, after the cast to float32, as :func:`mask_nodata` does on the host.
        """
        import torch

        x = images.to(self.device, torch.float32)
        if nodata is not None:
            x = _mask_tensor(x, nodata)
        x = self.adapter.normalise(x, plan)
        return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    def raw_uploads(self, dtype) -> bool:
        """Whether tiles of ``dtype`` go to the device in that dtype (see :func:`raw_uploads`)."""
        return raw_uploads(dtype, self.device)

    def _run(self, fn, images: np.ndarray, plan: InputPlan, batch_size: int, prepared: bool,
             nodata: tuple | float | None = None) -> np.ndarray:
        import torch

        outputs = []
        # Dynamic int8 scales activations per call over the whole batch: a tile's tokens would depend on
        # its batch mates (and so on the chunking). One tile per call keeps every tile independent.
        step = 1 if self.key.precision == "int8" else batch_size
        if self.device.type == "cuda":
            step = min(step, device_batch_limit(self.device, images.shape[1:], self.adapter.variant.embed_dim))
        for batch in host_batches(images, step, self.device):
            with self.lock, torch.inference_mode():
                x = batch.to(self.device) if prepared else self.prepare(batch, plan, nodata)
                with torch.autocast(
                    self.device.type, dtype=self._autocast_dtype, enabled=self._autocast_dtype is not None
                ):
                    out = fn(self.module, x, plan)
                outputs.append(out.float().cpu().numpy())
        return np.concatenate(outputs, axis=0)

    def grid(self, images: np.ndarray, plan: InputPlan, batch_size: int, prepared: bool = False,
             nodata: tuple | float | None = None) -> np.ndarray:
        """Grid tokens ``(B, D, k, k)`` for model-size images ``(B, C, S, S)`` (raw, or ``prepared``); ``nodata``
        for raw images still in their storage dtype, masked on the device."""
        raw = {} if nodata is None else {"nodata": nodata}  # the plain call unchanged (wrappers keep working)
        return self._run(self.adapter.forward_grid, images, plan, batch_size, prepared, **raw)

    def pooled(self, images: np.ndarray, plan: InputPlan, batch_size: int, prepared: bool = False) -> np.ndarray:
        """The model's own pooled vectors ``(B, D)`` for model-size images (raw, or ``prepared``)."""
        return self._run(self.adapter.forward_pooled, images, plan, batch_size, prepared)

    def pool_tokens(self, mean_tokens: np.ndarray, plan: InputPlan) -> np.ndarray:
        """Apply the model's pooling head to mean tokens ``(B, D)``."""
        import torch

        with self.lock, torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(mean_tokens, dtype=np.float32)).to(self.device)
            return self.adapter.pool_tokens(self.module, x, plan).float().cpu().numpy()


#: Submodules whose Linear layers stay float32 under ``precision="int8"``: patch embeddings compute the
#: convolution kernels from wavelengths (DOFA, Panopticon, TerraFM) on 1-D inputs, a negligible share of
#: the work, where quantisation error would reach every token.
INT8_KEEP_FLOAT = ("patch_embed",)


# ---------------------------------------------------------------------------------------------
# Keeping a GPU fed. On CPU every function here is the identity of the plain path (bit-identical results).

#: ``torch.compile`` of every model loaded from now on in this process (opt-in: :func:`set_compile`).
_COMPILE = {"enabled": False}
#: Free device memory in bytes, probed once per process and device (:func:`free_device_memory`).
_FREE_MEMORY: dict[str, int] = {}


def set_compile(enabled: bool = True) -> None:
    """Opt in to ``torch.compile`` for the models this process loads next (e.g. on each worker through
    :class:`xrembed.distributed.ModelPreload`); already loaded models are kept as they are.

    Compilation takes tens of seconds per model and shape and pays off only on long GPU jobs.
    """
    _COMPILE["enabled"] = bool(enabled)


def client_elsewhere() -> bool:
    """Whether a ``dask.distributed`` client is active in this process, so that graphs run on its workers
    (checked without importing ``distributed``)."""
    import sys

    if "distributed" not in sys.modules:
        return False
    from distributed import default_client

    try:
        default_client()
    except ValueError:
        return False
    return True


#: CPU capabilities (``torch.backends.cpu.get_cpu_capability()``) with no bfloat16 matrix instructions: bf16
#: is emulated there and runs 2-4x slower than fp32 (docs/benchmarks.md, "CPU precisions").
CPUS_WITHOUT_BF16 = ("DEFAULT", "NO AVX", "AVX2")


def slow_precision_note(precision: str, device: str) -> str | None:
    """Why ``precision`` runs slower than fp32 on ``device``, naming the faster choice; None when it does not."""
    if precision != "bf16" or device != "cpu":
        return None
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if capability.upper() not in CPUS_WITHOUT_BF16:
        return None
    return (
        f"precision='bf16' on this CPU ({capability}, no bfloat16 instructions) is emulated and runs slower than "
        "fp32 (2-4x slower measured on an AVX2 machine); use precision='int8' (dynamic quantisation, CPU) or "
        "'fp32' here, and bf16 on a GPU or a CPU with AVX512-BF16/AMX."
    )


def check_device(device, *, where: str = "this machine") -> str:
    """``device`` (``cpu``, ``cuda[:N]``, ``mps``) if it is present *here*, else a clear :class:`OptionError`.

    ``embed()`` checks on the client; a ``cuda`` device asked for from a client without one (a CPU
    laptop driving GPU workers) is checked again where the model runs, each worker resolving ``cuda`` to
    its own GPU (``dask_cuda`` sets ``CUDA_VISIBLE_DEVICES`` per worker).
    """
    import torch

    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(
                f"device={str(device)!r} was asked for but no CUDA device is available on {where}; use device='cpu'"
                + (" or run the model tasks on GPU workers." if where != "this machine" else ".")
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise OptionError(
                f"device={str(device)!r}: {where} has {torch.cuda.device_count()} CUDA device(s); "
                "use 'cuda' or an index below that."
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise OptionError(f"device='mps' was asked for but MPS is not available on {where}; use device='cpu'.")
    return str(resolved)


def free_device_memory(device) -> int | None:
    """Free memory of a CUDA ``device`` in bytes, probed once per process (``None`` on CPU)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = str(device)
    if name not in _FREE_MEMORY:
        free, _total = torch.cuda.mem_get_info(device)
        _FREE_MEMORY[name] = int(free)
    return _FREE_MEMORY[name]


#: Bytes of activations per token and embedding channel held at once by a ViT forward pass (inference,
#: fp32: the residual stream, qkv, attention output and the 4x MLP hidden layer, with headroom).
BYTES_PER_TOKEN_CHANNEL = 4 * 16


def device_batch_limit(device, image_shape, embed_dim: int, fraction: float = 0.5) -> int:
    """The most tiles per forward pass that fit in ``fraction`` of the device's free memory (CPU: no limit).

    ``image_shape`` is one tile's ``(C, S, S)``; a tile of S x S pixels with patch P has (S/P)^2 tokens,
    bounded here by S^2/64 (P >= 8). The estimate only ever lowers a requested batch size.
    """
    free = free_device_memory(device)
    if free is None:
        return 2**31
    channels, height, width = image_shape
    tokens = max(1, (height * width) // 64)
    per_tile = tokens * embed_dim * BYTES_PER_TOKEN_CHANNEL + channels * height * width * 4 * 3
    return max(1, int(free * fraction) // per_tile)


def raw_uploads(dtype, device) -> bool:
    """Whether images of ``dtype`` cross to ``device`` in their storage dtype, cast and masked there.

    On CUDA, integer pixels narrower than float32 (uint16 reflectance, uint8, int16) are copied as they are
    stored, half (or a quarter) of the bytes of float32, and become float32 on the device; on CPU there is
    no copy to save, and the host path (cast, mask, normalise) is kept as it is.
    """
    import torch

    dtype = np.dtype(dtype)
    return torch.device(device).type == "cuda" and dtype.kind in "iu" and dtype.itemsize < 4


def _mask_tensor(x, nodata: tuple | float | None):
    """Float tensor ``x`` ``(B, C, H, W)`` with each band's nodata as NaN (the device twin of
    :func:`_mask_in_place`, same comparison in float32)."""
    import torch

    if np.ndim(nodata) == 0:
        nodata = (nodata,) * x.shape[1]
    if len(nodata) != x.shape[1]:
        raise ValueError(f"{len(nodata)} nodata values for {x.shape[1]} bands")
    values = [np.float32(np.nan) if v is None or np.isnan(v) else np.float32(v) for v in nodata]
    target = torch.tensor(values, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return torch.where(x == target, torch.tensor(float("nan"), device=x.device), x)


def host_batches(images: np.ndarray, step: int, device):
    """Batches of ``images`` as tensors, ready for ``device``.

    On CPU: views of the array (no copy), exactly as before. On CUDA: each batch is copied into pinned
    host memory and sent to the device on a side stream, the *next* batch's copy issued before the
    current one is handed over, so the transfer overlaps the forward pass; the compute stream waits on
    the copy's event before using it.
    """
    import torch

    device = torch.device(device)
    starts = range(0, images.shape[0], step)
    if device.type != "cuda":
        for start in starts:
            yield torch.from_numpy(np.ascontiguousarray(images[start : start + step]))
        return
    side = torch.cuda.Stream(device)

    def upload(start):
        host = torch.from_numpy(np.ascontiguousarray(images[start : start + step])).pin_memory()
        with torch.cuda.stream(side):
            moved = host.to(device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(side)
        return moved, done, host  # keep the pinned buffer alive until the copy is done

    pending = upload(starts[0]) if len(starts) else None
    for i in range(len(starts)):
        moved, done, _host = pending
        pending = upload(starts[i + 1]) if i + 1 < len(starts) else None
        current = torch.cuda.current_stream(device)
        current.wait_event(done)
        moved.record_stream(current)
        yield moved


def quantize_linear(module):
    """A copy of ``module`` whose ``nn.Linear`` layers compute in int8 (dynamic quantisation, CPU).

    Weights are quantised per tensor once; activations are quantised on the fly per batch. Every other
    layer (convolutions, norms, attention's softmax) and the Linear layers under :data:`INT8_KEEP_FLOAT`
    stay float32. ``torch.ao.quantization.quantize_dynamic`` is deprecated in favour of ``torchao``, a
    heavy extra dependency; it still works in torch 2.13 and needs nothing else, so it is used here with
    its deprecation warnings silenced.
    """
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    names = {
        name
        for name, layer in module.named_modules()
        if type(layer) is torch.nn.Linear and not set(name.split(".")) & set(INT8_KEEP_FLOAT)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(module, names, dtype=torch.qint8)


def _import_adapter(path: str):
    module_name, _, qualname = path.partition(":")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def adapter_path(adapter) -> str:
    """``"module:Class"`` of an adapter instance, importable in any worker process."""
    cls = type(adapter)
    return f"{cls.__module__}:{cls.__qualname__}"


_RUNTIMES: dict[ModelKey, Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def get_runtime(key: ModelKey) -> Runtime:
    """The process-wide :class:`Runtime` for ``key``, loading the model on first use.

    A checkpoint file replaced under the same path (another size or modification time) is reloaded:
    the cache must never serve the old weights for the new file.
    """
    stamp = _file_stamp(key.weights_path)
    runtime = _RUNTIMES.get(key)
    if runtime is None or runtime.weights_stamp != stamp:
        with _RUNTIMES_LOCK:
            runtime = _RUNTIMES.get(key)
            if runtime is None or runtime.weights_stamp != stamp:
                runtime = Runtime(key)
                runtime.weights_stamp = stamp
                _RUNTIMES[key] = runtime
    return runtime


def _file_stamp(path: str | None) -> tuple[int, int] | None:
    import os

    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns)


def clear_runtimes() -> None:
    """Forget every loaded model in this process (frees memory; the next compute reloads)."""
    with _RUNTIMES_LOCK:
        _RUNTIMES.clear()


def load_count() -> int:
    """How many models this process holds (used by tests to check one load per process)."""
    return len(_RUNTIMES)


# ---------------------------------------------------------------------------------------------
# Block functions. ``block`` is (..., C, H, W); leading dims (time, ...) are independent images.


def _mask_in_place(values: np.ndarray, nodata: tuple | float | None) -> None:
    """Set each band's nodata value to NaN in float ``values`` ``(..., C, H, W)``.

    ``nodata`` is ``None``, a scalar (every band) or one value or ``None`` per band.
    """
    if nodata is None:
        return
    if np.ndim(nodata) == 0:
        nodata = (nodata,) * values.shape[-3]
    if len(nodata) != values.shape[-3]:
        raise ValueError(f"{len(nodata)} nodata values for {values.shape[-3]} bands")
    for c, value in enumerate(nodata):
        if value is not None and not np.isnan(value):
            band = values[..., c, :, :]
            band[band == values.dtype.type(value)] = np.nan


def mask_nodata(values: np.ndarray, nodata: tuple | float | None) -> np.ndarray:
    """``values`` ``(..., C, H, W)`` with each band's nodata as NaN (a float copy; no copy without nodata)."""
    if nodata is None:
        return values
    values = np.array(values, dtype=np.result_type(values.dtype, np.float32))
    _mask_in_place(values, nodata)
    return values


def _as_images(block: np.ndarray, nodata: tuple | float | None) -> tuple[np.ndarray, np.ndarray]:
    """Float32 images ``(N, C, H, W)`` with invalid pixels as NaN, and the valid mask ``(N, H, W)``.

    A pixel is invalid if any band is NaN or equals that band's nodata value (``nodata``: ``None``, a
    scalar, or one value or ``None`` per channel).
    """
    images = block.reshape((-1,) + block.shape[-3:]).astype(np.float32, copy=True)
    _mask_in_place(images, nodata)
    valid = np.isfinite(images).all(axis=1)
    return images, valid


def valid_counts(valid: np.ndarray, patch_size: int) -> np.ndarray:
    """Number of valid pixels in each ``patch_size`` cell: ``(N, H, W)`` -> ``(N, ceil(H/P), ceil(W/P))``."""
    n, height, width = valid.shape
    ny, nx = tiling.token_count(height, patch_size), tiling.token_count(width, patch_size)
    padded = np.zeros((n, ny * patch_size, nx * patch_size), dtype=np.int32)
    padded[:, :height, :width] = valid
    return padded.reshape(n, ny, patch_size, nx, patch_size).sum(axis=(2, 4))


def tile_grid_block(
    block: np.ndarray,
    *,
    key: ModelKey,
    plan: InputPlan,
    patch_size: int,
    image_size: int,
    batch_size: int,
    nodata: tuple | float | None,
) -> np.ndarray:
    """Grid embeddings ``(..., D, ceil(H/P), ceil(W/P))`` of a block cut on tile boundaries."""
    runtime = get_runtime(key)
    images, valid = _as_images(block, nodata)
    runtime.adapter.check_values(images, plan)
    raw = runtime.raw_uploads(block.dtype)  # tiles cut from the stored values, cast and masked on the device
    if raw:
        images = block.reshape(images.shape)
    n, _, height, width = images.shape
    tile_tokens = image_size // patch_size
    rows = tiling.tile_layout(tiling.token_count(height, patch_size), tile_tokens)
    cols = tiling.tile_layout(tiling.token_count(width, patch_size), tile_tokens)
    # Pixels beyond the raster (less than a patch, or the rest of a tile for a small raster) repeat the edge.
    need_h = rows[-1].start * patch_size + image_size
    need_w = cols[-1].start * patch_size + image_size
    padded = np.pad(images, ((0, 0), (0, 0), (0, need_h - height), (0, need_w - width)), mode="edge")
    windows = [(i, r, c) for i in range(n) for r in rows for c in cols]
    tiles = np.stack(
        [
            padded[i, :, r.start * patch_size : r.start * patch_size + image_size,
                   c.start * patch_size : c.start * patch_size + image_size]
            for i, r, c in windows
        ]
    )
    tokens = runtime.grid(tiles, plan, batch_size, nodata=nodata if raw else None)
    out = np.empty((n, tokens.shape[1], rows[-1].own_stop, cols[-1].own_stop), dtype=np.float32)
    for (i, r, c), tile_tokens_out in zip(windows, tokens):
        out[i, :, r.own_start : r.own_stop, c.own_start : c.own_stop] = tile_tokens_out[
            :, r.own_start - r.start : r.own_stop - r.start, c.own_start - c.start : c.own_stop - c.start
        ]
    empty = valid_counts(valid, patch_size) == 0
    out[np.broadcast_to(empty[:, None], out.shape)] = np.nan
    return out.reshape(block.shape[:-3] + out.shape[1:])


def count_block(block: np.ndarray, *, patch_size: int, nodata: tuple | float | None) -> np.ndarray:
    """Valid pixel counts ``(..., 1, ceil(H/P), ceil(W/P))`` (float32), the weights of the pooled mean."""
    _, valid = _as_images(block, nodata)
    counts = valid_counts(valid, patch_size).astype(np.float32)
    return counts.reshape(block.shape[:-3] + (1,) + counts.shape[1:])


def resize_block(
    block: np.ndarray,
    *,
    key: ModelKey,
    plan: InputPlan,
    image_size: int,
    patch_size: int,
    batch_size: int,
    nodata: tuple | float | None,
    what: str,
) -> np.ndarray:
    """Embed whole images resized to the model size: grid ``(..., D, k, k)`` or pooled ``(..., D)``."""
    import torch
    from torch.nn import functional as F

    runtime = get_runtime(key)
    images, valid = _as_images(block, nodata)
    runtime.adapter.check_values(images, plan)
    n = images.shape[0]
    # Resize in normalised space with invalid pixels at the band mean (0), so they do not bleed raw
    # fill values into their neighbours; the valid fraction is resized alongside to find empty cells.
    size = (image_size, image_size)
    with torch.inference_mode():
        prepared = runtime.prepare(torch.from_numpy(images), plan)
        resized = F.interpolate(prepared, size=size, mode="bilinear", align_corners=False, antialias=True)
        fraction = F.interpolate(torch.from_numpy(valid[:, None].astype(np.float32)), size=size, mode="area")
    resized = resized.float().cpu().numpy()
    if what == "pooled":
        out = runtime.pooled(resized, plan, batch_size, prepared=True)
        out[valid.reshape(n, -1).sum(axis=1) == 0] = np.nan
        return out.reshape(block.shape[:-3] + out.shape[1:])
    out = runtime.grid(resized, plan, batch_size, prepared=True)
    cells = out.shape[-1]
    # Tokens cover cells * patch px; a stride-P conv ignores the remainder of the model-size image.
    used = fraction.numpy()[:, 0, : cells * patch_size, : cells * patch_size]
    cell_fraction = used.reshape(n, cells, patch_size, cells, patch_size).sum(axis=(2, 4))
    out[np.broadcast_to((cell_fraction == 0)[:, None], out.shape)] = np.nan
    return out.reshape(block.shape[:-3] + out.shape[1:])


def pool_head_block(mean_tokens: np.ndarray, *, key: ModelKey, plan: InputPlan) -> np.ndarray:
    """Apply the model's pooling head to mean tokens ``(..., D)``; all-NaN rows stay NaN."""
    flat = mean_tokens.reshape(-1, mean_tokens.shape[-1])
    empty = ~np.isfinite(flat).all(axis=1)
    out = get_runtime(key).pool_tokens(np.where(empty[:, None], 0.0, flat), plan)
    out[empty] = np.nan
    return out.reshape(mean_tokens.shape[:-1] + out.shape[-1:])
