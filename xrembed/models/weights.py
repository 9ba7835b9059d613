"""Finding, reading and strictly loading checkpoints.

``weights=None`` means the variant's official checkpoint, fetched once through :mod:`xrembed.cache`: from
the Hugging Face Hub into its cache (``HF_HOME``), or from a plain URL into ``$XREMBED_CACHE/weights``,
checked against the publisher's sha256 where one is given (:class:`~xrembed.models.base.UrlCheckpoint`) and
otherwise checked to be a readable checkpoint (SatMAE's Zenodo record publishes no checksum). Either
offline switch (``HF_HUB_OFFLINE``, ``XREMBED_OFFLINE``) stops every download. A path means that local
file; ``"random"`` means a seeded random initialisation, for tests and benchmarks only, and is warned about.

Resolution (:func:`resolve_weights`) happens when ``embed()`` is called, so a missing file or an
unreachable hub is reported at once; reading and loading (:func:`load_module`) happen once per process
when the graph first computes.
"""

from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..cache import cache_dir, download_hub_file, download_url, hub_endpoint, offline_reason
from ..errors import RandomWeightsWarning, WeightsError, user_stacklevel
from .base import ModelAdapter, UrlCheckpoint

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

RANDOM = "random"
RANDOM_SEED = 0

#: Prefixes added by training wrappers (DDP, Lightning, EMA); stripped before any family clean-up.
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")


@dataclass(frozen=True)
class WeightsSource:
    """A resolved choice of weights: a local file, or the seeded random initialisation."""

    path: str | None
    label: str

    @property
    def is_random(self) -> bool:
        return self.path is None


def check_weights(adapter: ModelAdapter, weights: str | os.PathLike | None) -> None:
    """Raise the :class:`WeightsError` that ``weights=`` earns without any download: a local file that does
    not exist, or the official weights of a variant that has none."""
    if isinstance(weights, str) and weights.lower() == RANDOM:
        return
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {str(path)!r} does not exist; pass the path of a downloaded checkpoint.")
    elif adapter.variant.checkpoint is None:
        raise WeightsError(
            f"{adapter.model_id}/{adapter.variant.name} has no official checkpoint; pass weights='/path/to/file'."
        )


def resolve_weights(adapter: ModelAdapter, weights: str | os.PathLike | None) -> WeightsSource:
    """Turn the ``weights=`` argument into a local file (downloading the official one if needed)."""
    check_weights(adapter, weights)
    if isinstance(weights, str) and weights.lower() == RANDOM:
        warnings.warn(
            f"{adapter.model_id}/{adapter.variant.name} runs with random weights (seed {RANDOM_SEED}): "
            "its embeddings carry no meaning. Use weights=None (official checkpoint) or a file path for real use.",
            RandomWeightsWarning,
            stacklevel=user_stacklevel(),
        )
        return WeightsSource(None, f"random(seed={RANDOM_SEED})")
    if weights is not None:
        path = Path(weights).expanduser().resolve()
        return WeightsSource(str(path), f"file://{path}")
    return _download_official(adapter)


def _download_official(adapter: ModelAdapter) -> WeightsSource:
    checkpoint = adapter.variant.checkpoint  # not None: check_weights refused that case
    if isinstance(checkpoint, UrlCheckpoint):
        return _download_url(adapter, checkpoint)
    def failure(why: str) -> WeightsError:
        return WeightsError(
            f"could not get the official {adapter.model_id}/{adapter.variant.name} weights "
            f"({checkpoint.filename} from the Hugging Face Hub repo {checkpoint.repo_id}): {why} "
            f"Without network access (or with HF_HUB_OFFLINE=1), download the file elsewhere, e.g. "
            f"`hf download {checkpoint.repo_id} {checkpoint.filename}`, and pass its local path: "
            f"weights='/path/to/{checkpoint.filename}' (command line: --weights /path/to/{checkpoint.filename})."
        )

    try:
        # Cache first: no network round trip when the file is already there.
        path = download_hub_file(checkpoint.repo_id, checkpoint.filename, revision=checkpoint.revision, cached_only=True)
    except Exception:
        path = None
    if path is None:
        reason = offline_reason(hub_endpoint())
        if reason is not None:
            raise failure(f"no network: {reason}, and the file is not in the Hugging Face cache.")
        try:
            path = download_hub_file(checkpoint.repo_id, checkpoint.filename, revision=checkpoint.revision)
        except Exception as err:  # hub errors (a missing repo, a dropped connection): all end the same way
            raise failure(f"{type(err).__name__}: {_first_line(err)}") from err
    # The snapshot directory name is the commit the file came from: a precise identity for attrs. A file in a
    # folder of the repository (Galileo's models/base/encoder.pt) sits deeper than the snapshot directory.
    commit = Path(path).parents[checkpoint.filename.count("/")].name
    return WeightsSource(str(path), f"{checkpoint.label}@{commit}" if checkpoint.revision is None else checkpoint.label)


def _download_url(adapter: ModelAdapter, checkpoint: UrlCheckpoint) -> WeightsSource:
    target = cache_dir() / checkpoint.filename
    if target.is_file():
        return WeightsSource(str(target), checkpoint.label)

    def failure(why: str) -> WeightsError:
        return WeightsError(
            f"could not download the official {adapter.model_id}/{adapter.variant.name} weights from "
            f"{checkpoint.url}: {why} Download the file elsewhere and pass its local path: "
            f"weights='/path/to/{checkpoint.filename}' (command line: --weights), or put it at {target}."
        )

    target.parent.mkdir(parents=True, exist_ok=True)  # where the message says to put the file
    reason = offline_reason(checkpoint.url)
    if reason is not None:
        raise failure(f"no network: {reason}.")
    try:
        # Checked before it is moved into place: a truncated or wrong file never sits in the cache.
        download_url(checkpoint.url, target, sha256=checkpoint.sha256, check=_check_readable, progress=True)
    except Exception as err:
        raise failure(f"{type(err).__name__}: {_first_line(err)}") from err
    return WeightsSource(str(target), checkpoint.label)


def _check_readable(path: Path) -> None:
    """Refuse a download that is not a readable checkpoint (for URLs whose publisher gives no sha256).

    A zip-format checkpoint (``torch.save`` since 1.6) has a CRC per member: checking them finds truncation
    and corruption without unpickling. A legacy-format file is read as a state dict.
    """
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise WeightsError(f"the downloaded checkpoint is corrupt (member {bad!r} fails its CRC check).")
    else:
        read_state_dict(str(path))


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return (text[0].rstrip(".") + ".") if text else ""


def read_state_dict(path: str):
    """Read a checkpoint file into a flat ``{key: tensor}`` dict (safe unpickling only)."""
    import torch

    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            obj = load_file(path)
        else:
            # MAE-style training checkpoints pickle their argparse Namespace next to the weights.
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(
            f"{path!r} is not a readable PyTorch checkpoint ({type(err).__name__}: {_first_line(err)}) "
            "It may be truncated or the wrong file: delete it and download it again, or pass another file."
        ) from err
    for key in ("state_dict", "model", "module", "teacher"):  # training wrappers (Lightning, MAE, DDP, DINO)
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    obj = _flatten_parts(obj)
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise WeightsError(f"{path!r} holds no state dict of tensors; pass the model checkpoint file.")
    return obj


def _flatten_parts(obj):
    """A release that nests one state dict per part (CROMA: ``{'s1_encoder': {...}, ...}``) as flat
    ``part.key`` names; anything else is returned unchanged."""
    if not isinstance(obj, dict) or not any(isinstance(v, dict) for v in obj.values()):
        return obj
    if not all(hasattr(v, "shape") or (isinstance(v, dict) and all(hasattr(t, "shape") for t in v.values()))
               for v in obj.values()):
        return obj
    flat = {}
    for key, value in obj.items():
        flat.update({f"{key}.{inner}": t for inner, t in value.items()} if isinstance(value, dict) else {key: value})
    return flat


def strip_wrapper_prefixes(state_dict: dict) -> dict:
    """Remove training-wrapper prefixes (``module.``, ``model.``) present on every key."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def load_module(adapter: ModelAdapter, source: WeightsSource) -> nn.Module:
    """Build the variant's module and load ``source`` into it strictly; returns it in eval mode."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        module = adapter.build_module()
    if source.path is not None:
        state = adapter.clean_state_dict(strip_wrapper_prefixes(read_state_dict(source.path)))
        _check_keys(adapter, module, state, source.path)
        module.load_state_dict(state, strict=True)
        _check_finite(state, source.path)
    return module.eval().requires_grad_(False)


def _check_keys(adapter: ModelAdapter, module, state: dict, path: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if not (missing or unexpected or wrong_shape):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''})")
    if wrong_shape:
        k = wrong_shape[0]
        parts.append(
            f"{len(wrong_shape)} keys with the wrong shape (e.g. {k}: file {tuple(state[k].shape)}, "
            f"model {tuple(expected[k].shape)})"
        )
    others = [name for name in adapter.variants if name != adapter.variant.name]
    hint = f" Is it another variant? This model has variants {others + [adapter.variant.name]}." if others else ""
    raise WeightsError(
        f"{path!r} does not match {adapter.model_id}/{adapter.variant.name}: " + "; ".join(parts) + "." + hint
    )


def _check_finite(state: dict, path: str) -> None:
    """Refuse NaN/inf weights: they would give an all-NaN grid that reads as "no valid pixel"."""
    import torch

    bad = [
        k for k, t in state.items()
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())
    ]
    if bad:
        raise WeightsError(
            f"{path!r} holds non-finite values (NaN or inf) in {len(bad)} tensor(s): {', '.join(bad[:4])}"
            f"{', ...' if len(bad) > 4 else ''}. The checkpoint is corrupt or was saved after a diverged training "
            "step: download it again, or pass another file."
        )
