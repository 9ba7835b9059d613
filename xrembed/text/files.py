"""Where a tokenizer's files come from, resolved like weights (:mod:`xrembed.models.weights`).

CLIP (RemoteCLIP): ``tokenizer=`` (a BPE ``.txt.gz``), else the vocabulary shipped with xrembed.
SigLIP (DOFA-CLIP): ``tokenizer=`` (a ``tokenizer.json`` or the folder holding it), else a
``tokenizer.json`` beside the weights file (the Hub snapshot layout), else the Hugging Face cache, then the
Hub, for each repo the variant names (its weights repo, then ``timm/ViT-B-16-SigLIP``); without network
the error says how to download the file and pass it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..cache import download_hub_file, hub_endpoint, offline_reason
from ..errors import WeightsError
from ..models.text_config import TextTowerConfig

TOKENIZER_FILE = "tokenizer.json"


def resolve_tokenizer_file(
    model_name: str, cfg: TextTowerConfig, tokenizer: str | os.PathLike | None, weights_path: str | None
) -> str | None:
    """The local tokenizer file for ``cfg`` (``None``: CLIP's shipped vocabulary), downloading if needed.

    Raises :class:`~xrembed.errors.WeightsError` for a ``tokenizer=`` path that does not exist, or when no
    ``tokenizer.json`` is found and the Hub cannot be reached.
    """
    if tokenizer is not None:
        path = Path(tokenizer).expanduser()
        if path.is_dir() and cfg.tokenizer == "siglip":
            path = path / TOKENIZER_FILE
        if not path.is_file():
            what = "tokenizer.json (or its folder)" if cfg.tokenizer == "siglip" else "BPE vocabulary (.txt.gz)"
            raise WeightsError(f"tokenizer file {str(path)!r} does not exist; pass the path of the {what}.")
        return str(path.resolve())
    if cfg.tokenizer == "clip":
        return None
    if weights_path is not None:
        beside = Path(weights_path).parent / TOKENIZER_FILE
        if beside.is_file():
            return str(beside)
    repos = cfg.tokenizer_repos
    for repo in repos:  # cache first: no network round trip when a file is already there
        try:
            found = download_hub_file(repo, TOKENIZER_FILE, cached_only=True)
        except Exception:
            found = None
        if found is not None:
            return str(found)
    hint = (
        f"download it elsewhere, e.g. `hf download {repos[-1]} {TOKENIZER_FILE}`, and pass its path: "
        f"tokenizer='/path/to/{TOKENIZER_FILE}' (or put it beside the weights file)."
    )
    reason = offline_reason(hub_endpoint())
    if reason is not None:
        raise WeightsError(
            f"could not get the {model_name} tokenizer ({TOKENIZER_FILE} from the Hugging Face Hub repos "
            f"{list(repos)}): no network: {reason}, and the file is not in the Hugging Face cache. Without "
            f"network access (or with HF_HUB_OFFLINE=1), {hint}"
        )
    errors = []
    for repo in repos:
        try:
            return str(download_hub_file(repo, TOKENIZER_FILE))
        except Exception as err:  # a repo without the file: try the next one
            errors.append(f"{repo}: {type(err).__name__}")
    raise WeightsError(f"could not get the {model_name} tokenizer ({'; '.join(errors)}); {hint}")


def load_tokenizer(cfg: TextTowerConfig, path: str | None):
    """The tokenizer object for ``cfg`` reading ``path`` (``None``: the shipped CLIP vocabulary)."""
    if cfg.tokenizer == "clip":
        from .clip_tokenizer import CLIPTokenizer

        return CLIPTokenizer(path, cfg.context_length)
    from .siglip_tokenizer import SigLIPTokenizer

    return SigLIPTokenizer(path, cfg.context_length)
