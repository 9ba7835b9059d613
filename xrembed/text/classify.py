"""Zero-shot class maps: ``da.rsembed.classify(labels, model=...)``.

The labels are embedded once (eagerly, through the text tower and the prompt templates), then scored
against the image embeddings lazily, chunk by chunk, as the models' own recipes do:

* DOFA-CLIP (SigLIP): ``sigmoid(cos(img, txt) * exp(logit_scale) + logit_bias)``, one independent
  probability per label (they need not sum to 1);
* RemoteCLIP (CLIP): ``softmax`` over the labels of ``exp(logit_scale) * cos(img, txt)``.

``logit_scale`` and ``logit_bias`` are read from the checkpoint. ``output="pooled"`` scores one image
embedding per image (resize mode by default: the model's whole-image recipe); ``output="grid"`` scores
each cell of ``embed(..., space="joint")`` (tile mode), an approximation documented in
``docs/zero-shot.md``. Cells without valid pixels stay NaN.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..errors import OptionError
from .encode import check_templates, check_texts, label_embeddings, text_attrs, text_model


def check_labels(labels: Sequence[str]) -> list[str]:
    """Labels as a non-empty list of distinct strings (they become the ``label`` coordinate)."""
    items = check_texts(labels, "labels")
    repeated = sorted({label for label in items if items.count(label) > 1})
    if repeated:
        raise OptionError(f"labels {repeated} are listed more than once; list each label once.")
    return items


def score(cosine: xr.DataArray, logit_scale: float, logit_bias: float | None) -> xr.DataArray:
    """Probabilities from cosine similarities along ``label``: sigmoid with a bias, else softmax."""
    logits = cosine * float(np.exp(logit_scale))
    if logit_bias is not None:
        return 1.0 / (1.0 + np.exp(-(logits + logit_bias)))
    shifted = np.exp(logits - logits.max("label"))
    return shifted / shifted.sum("label")


def classify(
    obj: xr.DataArray | xr.Dataset,
    labels: Sequence[str],
    *,
    model: str,
    template: str | Sequence[str] | None = None,
    output: str = "grid",
    input_prep: str | None = None,
    variant: str | None = None,
    weights: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    **options,
) -> xr.DataArray:
    """Zero-shot probabilities of ``labels`` for a raster (see :meth:`RSEmbedAccessor.classify`)."""
    from ..embedding import embed

    items = check_labels(labels)
    templates = check_templates(template)
    output = str(output).lower()
    if output not in ("grid", "pooled"):
        raise OptionError(f"output={output!r} is not one of ['grid', 'pooled'].")
    for name in ("space", "output"):
        if name in options:
            raise OptionError(f"classify() sets {name}= itself; drop it.")
    tm = text_model(model, variant=variant, weights=weights, tokenizer=tokenizer)  # raises early, loads once
    if input_prep is None:
        input_prep = "resize" if output == "pooled" else "tile"
    emb = embed(
        obj, model, output=output, input_prep=input_prep, space="joint", variant=variant, weights=weights, **options
    )
    text = xr.DataArray(
        label_embeddings(tm, items, templates), dims=("label", "embedding"),
        coords={"label": items, "embedding": emb["embedding"].values},
    )
    unit = emb / np.sqrt((emb**2).sum("embedding"))
    cosine = xr.dot(unit, text, dim="embedding")
    probs = score(cosine, tm.logit_scale, tm.logit_bias)
    probs = probs.transpose(*[("label" if d == "embedding" else d) for d in emb.dims]).astype(np.float32)
    probs.name = "probability"
    probs.attrs = {
        **{k: v for k, v in emb.attrs.items() if k != "long_name"},
        **text_attrs(tm, templates),
        "long_name": f"{tm.adapter.model_id} zero-shot probability",
        "labels": items,
    }
    probs.encoding = {k: v for k, v in emb.encoding.items() if k == "_FillValue"}
    return probs
