"""Text embeddings: the text tower loaded strictly once per process, prompt templates, ``encode_text``.

Text embeddings are computed eagerly (a handful of labels), once per call, and then enter lazy image
graphs as small constant arrays: never once per chunk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..errors import OptionError, WeightsError
from ..models.registry import get_adapter, list_models
from ..models.weights import RANDOM_SEED, WeightsSource, read_state_dict, resolve_weights, strip_wrapper_prefixes
from ..models.text_config import TextTowerConfig
from .files import load_tokenizer, resolve_tokenizer_file

#: The template used when none is given: the label itself.
PLAIN_TEMPLATE = "{}"


def text_config(adapter) -> TextTowerConfig | None:
    """The text tower of ``adapter``'s variant, or ``None`` for an image-only model."""
    return dict(adapter.variant.extra).get("text")


def text_models() -> list[str]:
    """Registered model ids whose (default) variant has a text tower.

    Examples
    --------
    >>> "dofa_clip" in text_models() and "remoteclip" in text_models() and "dofa" not in text_models()
    True
    """
    return [m for m in list_models() if text_config(get_adapter(m)) is not None]


def text_adapter(model: str, variant: str | None = None):
    """``(adapter, text config)`` of ``model``; :class:`~xrembed.errors.OptionError` if it has no text tower."""
    adapter = get_adapter(model, variant)
    cfg = text_config(adapter)
    if cfg is None:
        raise OptionError(
            f"model {adapter.model_id!r} ({adapter.variant.name}) has no text tower, so it cannot encode text or "
            f"classify by label; use a vision-language model: {text_models()}."
        )
    return adapter, cfg


@dataclass
class TextModel:
    """A loaded text tower with its tokenizer; ``embed`` turns texts into unit vectors."""

    adapter: Any
    cfg: TextTowerConfig
    tower: Any
    tokenizer: Any
    weights_label: str
    lock: threading.Lock

    @property
    def logit_scale(self) -> float:
        return self.tower.scalars()[0]

    @property
    def logit_bias(self) -> float | None:
        return self.tower.scalars()[1]

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised text embeddings ``(len(texts), output_dim)`` (float32)."""
        import torch

        ids = self.tokenizer(list(texts))
        out = []
        with self.lock, torch.inference_mode():
            for start in range(0, len(ids), batch_size):
                vectors = self.tower(torch.from_numpy(ids[start : start + batch_size]))
                out.append(torch.nn.functional.normalize(vectors.float(), dim=-1).numpy())
        return np.concatenate(out, axis=0)


_TOWERS: dict[tuple, Any] = {}
_TOWERS_LOCK = threading.Lock()


def load_text_tower(adapter, cfg: TextTowerConfig, source: WeightsSource):
    """Build the text tower and load it strictly from ``source`` (the whole-model checkpoint).

    Raises :class:`~xrembed.errors.WeightsError` when the file has no text tower (image-only weights) or
    its text keys do not match (missing, unexpected or wrong-shaped keys, another variant).
    """
    import torch

    from .tower import TextTower

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        tower = TextTower(cfg)
    if source.path is not None:
        state = adapter.clean_text_state_dict(strip_wrapper_prefixes(read_state_dict(source.path)))
        if not state:
            raise WeightsError(
                f"{source.path!r} holds no text tower: it is an image-only checkpoint of "
                f"{adapter.model_id}/{adapter.variant.name}. Text (encode_text, classify, text similarity) needs "
                "the whole vision-language checkpoint (image and text towers, logit_scale): pass weights=None "
                "for the official file, or the path of the whole open_clip checkpoint."
            )
        expected = tower.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing keys ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
            if unexpected:
                parts.append(
                    f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''})"
                )
            if wrong:
                k = wrong[0]
                parts.append(
                    f"{len(wrong)} keys with the wrong shape (e.g. {k}: file {tuple(state[k].shape)}, "
                    f"model {tuple(expected[k].shape)})"
                )
            raise WeightsError(
                f"the text tower in {source.path!r} does not match {adapter.model_id}/{adapter.variant.name} "
                f"(keys under {cfg.key_prefix or 'the top level'!r}): " + "; ".join(parts)
                + f". Is it another variant? This model has variants {sorted(adapter.variants)}."
            )
        tower.load_state_dict(state, strict=True)
        bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise WeightsError(f"{source.path!r} holds non-finite values in its text tower ({', '.join(bad[:4])}).")
    return tower.float().eval().requires_grad_(False)


def _stamp(path: str | None):
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns)


def text_model(
    model: str,
    *,
    variant: str | None = None,
    weights: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
) -> TextModel:
    """The process-wide :class:`TextModel` of ``model`` (loaded once per weights file and tokenizer).

    Everything that can be checked without reading the checkpoint (a model without text, a missing
    weights or tokenizer file, no network for the official files) is raised here, at once.
    """
    adapter, cfg = text_adapter(model, variant)
    source = resolve_weights(adapter, weights)
    tokenizer_path = resolve_tokenizer_file(f"{adapter.model_id}/{adapter.variant.name}", cfg, tokenizer, source.path)
    key = (type(adapter).__module__, type(adapter).__qualname__, adapter.variant.name, source.path,
           _stamp(source.path), tokenizer_path, _stamp(tokenizer_path))
    found = _TOWERS.get(key)
    if found is None:
        with _TOWERS_LOCK:
            found = _TOWERS.get(key)
            if found is None:
                found = TextModel(
                    adapter=adapter, cfg=cfg, tower=load_text_tower(adapter, cfg, source),
                    tokenizer=load_tokenizer(cfg, tokenizer_path), weights_label=source.label, lock=threading.Lock(),
                )
                _TOWERS[key] = found
    return found


def clear_text_models() -> None:
    """Forget the loaded text towers of this process."""
    with _TOWERS_LOCK:
        _TOWERS.clear()


# --------------------------------------------------------------------------------------------- inputs


def check_texts(texts: str | Sequence[str], what: str = "texts") -> list[str]:
    """``texts`` as a non-empty list of strings, or a clear :class:`~xrembed.errors.OptionError`."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence) and not hasattr(texts, "__iter__"):
        raise OptionError(f"{what} must be a string or a list of strings, not {type(texts).__name__}.")
    items = list(texts)
    if not items:
        raise OptionError(f"{what} is empty; pass at least one string, e.g. ['water', 'forest'].")
    bad = [t for t in items if not isinstance(t, str)]
    if bad:
        raise OptionError(f"{what} must all be strings; got {bad[:3]!r}. Convert them with str(...) first.")
    return items


def check_templates(template: str | Sequence[str] | None) -> list[str]:
    """Prompt templates, each with one ``{}`` where the label goes (``None``: the label alone)."""
    if template is None:
        return [PLAIN_TEMPLATE]
    templates = check_texts(template, "template")
    for t in templates:
        if t.count("{}") != 1:
            raise OptionError(
                f"template {t!r} must contain exactly one '{{}}' where the label goes, "
                "e.g. 'a satellite image of {}.'"
            )
    return templates


def label_embeddings(tm: TextModel, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """Unit text embeddings ``(len(labels), D)``: each label in every template, embedded, L2-normalised,
    averaged over the templates and normalised again (CLIP's prompt ensembling)."""
    prompts = [t.replace("{}", label) for label in labels for t in templates]
    vectors = tm.embed(prompts).reshape(len(labels), len(templates), -1).mean(axis=1)
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------------------------- public


def encode_text(
    model: str,
    texts: str | Sequence[str],
    *,
    variant: str | None = None,
    weights: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    template: str | Sequence[str] | None = None,
) -> xr.DataArray:
    """Embed texts with a vision-language model's text tower: unit vectors in the image-text space.

    Parameters
    ----------
    model
        A model with a text tower: ``"dofa_clip"`` or ``"remoteclip"`` (see ``describe_model(m)["text"]``).
    texts
        One string or a list of strings.
    variant, weights
        As for ``embed()``: ``weights=None`` is the official whole checkpoint, a path that file, ``"random"``
        a seeded random tower (tests). The file must hold the text tower, not only the image tower.
    tokenizer
        DOFA-CLIP: a ``tokenizer.json`` (or its folder); default: beside the weights, else the Hugging Face
        cache or Hub. RemoteCLIP: a CLIP BPE ``.txt.gz``; default: the vocabulary shipped with xrembed.
    template
        A prompt template with ``{}`` for each text (``"a satellite image of {}."``), or several, averaged
        as CLIP does; default: the text alone.

    Returns
    -------
    xarray.DataArray
        ``(text, embedding)`` float32, L2-normalised along ``embedding``; the ``text`` coordinate holds the
        strings. ``attrs`` record the model, variant, weights, ``logit_scale``/``logit_bias`` (from the
        checkpoint) and the scoring (``sigmoid`` for DOFA-CLIP, ``softmax`` for RemoteCLIP).

    Examples
    --------
    >>> import xrembed
    >>> txt = xrembed.encode_text("remoteclip", ["a harbour", "sand dunes"], weights="/path/RemoteCLIP-ViT-B-32.pt")  # doctest: +SKIP
    >>> txt.sizes                                                                                             # doctest: +SKIP
    Frozen({'text': 2, 'embedding': 512})
    """
    items = check_texts(texts)
    templates = check_templates(template)
    tm = text_model(model, variant=variant, weights=weights, tokenizer=tokenizer)
    vectors = label_embeddings(tm, items, templates)
    out = xr.DataArray(
        vectors, dims=("text", "embedding"), coords={"text": items, "embedding": np.arange(vectors.shape[1])},
        name="text_embeddings",
    )
    out.attrs = text_attrs(tm, templates)
    return out


def text_attrs(tm: TextModel, templates: Sequence[str]) -> dict:
    """Plain-JSON provenance of text embeddings (model, weights, scalars, scoring, templates)."""
    attrs = {
        "model": tm.adapter.model_id,
        "variant": tm.adapter.variant.name,
        "weights": tm.weights_label,
        "logit_scale": tm.logit_scale,
        "scoring": tm.cfg.scoring,
        "templates": list(templates),
    }
    if tm.logit_bias is not None:
        attrs["logit_bias"] = tm.logit_bias
    return attrs


def weights_from_label(label: str) -> str | None:
    """The ``weights=`` argument that reproduces an ``attrs["weights"]`` label written by ``embed()``."""
    if label.startswith("random"):
        return "random"
    if label.startswith("file://"):
        return label[len("file://") :]
    return None  # hf://... or a URL: the official checkpoint


def query_vector(
    emb: xr.DataArray,
    text: str | Sequence[str],
    *,
    template: str | Sequence[str] | None = None,
    tokenizer: str | os.PathLike | None = None,
) -> np.ndarray:
    """The unit text vector ``(D,)`` to compare a joint-space embedding grid with (cosine similarity).

    The model, variant and weights are read from ``emb.attrs`` (as ``embed()`` writes them); several texts
    (or templates) are embedded once and averaged, then normalised again.

    Parameters
    ----------
    emb
        ``da.rsembed.embed("dofa_clip", space="joint")`` (or a pooled output of a text model).
    text
        The query, or several phrasings of it.
    template, tokenizer
        As for :func:`encode_text`.

    Raises
    ------
    OptionError
        ``emb`` is not in a joint image-text space (a plain grid of patch tokens, another model).

    Examples
    --------
    >>> j = da.rsembed.embed("dofa_clip", space="joint")          # doctest: +SKIP
    >>> q = query_vector(j, "a harbour"); q.shape                 # doctest: +SKIP
    (1152,)
    """
    attrs = getattr(emb, "attrs", {}) or {}
    model = attrs.get("model")
    joint = attrs.get("space") == "joint" or attrs.get("output") == "pooled"
    if model is None or not joint:
        raise OptionError(
            "this embedding grid is not in an image-text space, so a text query cannot be compared with it: "
            "embed with a vision-language model in the joint space, e.g. "
            "da.rsembed.embed('dofa_clip', space='joint'), then query that grid "
            f"(attrs: model={model!r}, space={attrs.get('space')!r}, output={attrs.get('output')!r})."
        )
    items = check_texts(text, "query")
    tm = text_model(
        model, variant=attrs.get("variant"), weights=weights_from_label(str(attrs.get("weights", ""))),
        tokenizer=tokenizer,
    )
    vectors = label_embeddings(tm, items, check_templates(template))
    mean = vectors.mean(axis=0)
    vector = (mean / np.linalg.norm(mean)).astype(np.float32)
    dim = emb.sizes.get("embedding") if hasattr(emb, "sizes") else None
    if dim is not None and dim != vector.shape[0]:
        raise OptionError(
            f"the grid has {dim} embedding values but {model}'s text space has {vector.shape[0]}; query a "
            "grid made with space='joint'."
        )
    return vector
