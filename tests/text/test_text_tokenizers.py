"""Tokenizer parity on edge cases: CLIP (RemoteCLIP) against open_clip 3.3.0's ``SimpleTokenizer`` on the
real shipped vocabulary; SigLIP (DOFA-CLIP) through ``tokenizers`` on a Hub-layout ``tokenizer.json``
against sentencepiece on the same model with open_clip's own ``canonicalize`` cleaning (the path the
reference page verified equal to open_clip's ``HFTokenizer``), padded with 1."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from xrembed import errors
from xrembed.text.clip_tokenizer import CLIPTokenizer, shipped_vocab
from xrembed.models.text_config import siglip_text
from xrembed.text.files import resolve_tokenizer_file
from xrembed.text.siglip_tokenizer import SigLIPTokenizer

from text_oracles import sentencepiece_reference

EDGE_TEXTS = [
    "a harbour",
    "Sand dunes, near the COAST!!",
    "fish &amp;amp; chips &lt;b&gt;",
    "snake_case_label",
    "",
    "x",
    "water " * 90,  # over-long: truncated, end token kept last
    "ﬁeld Ｔｏｗｎ ＡＢＣ",  # NFKC ligature and full-width
    "snow\tcloud\nlake   river",
    "cafÃ© mojibake",
    "东京 港口 🌊 ½ ² ٣",
    "it's we're they've I'm you'll he'd",
    "<start_of_text> literal <end_of_text>",
]


def test_shipped_vocabulary_is_open_clips_file(open_clip):
    reference = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    ours = Path(shipped_vocab())
    assert hashlib.md5(ours.read_bytes()).hexdigest() == "933b7abbbbde62c36f02f0e6ccde464f"
    assert ours.read_bytes() == reference.read_bytes()
    assert (ours.parent / "bpe_simple_vocab_16e6.LICENSE.txt").read_text().count("Copyright (c) 2021 OpenAI") == 1


def test_clip_ids_match_open_clip_simple_tokenizer(open_clip):
    from open_clip.tokenizer import SimpleTokenizer

    reference = SimpleTokenizer()(EDGE_TEXTS).numpy()
    ours = CLIPTokenizer()(EDGE_TEXTS)
    assert ours.shape == (len(EDGE_TEXTS), 77)
    np.testing.assert_array_equal(ours, reference)
    long = ours[EDGE_TEXTS.index("water " * 90)]
    assert long[0] == 49406 and long[-1] == 49407 and (long != 0).all()
    empty = ours[EDGE_TEXTS.index("")]
    assert empty[:3].tolist() == [49406, 49407, 0]


def test_siglip_ids_match_sentencepiece_with_open_clip_cleaning(siglip_dir, open_clip):
    ours = SigLIPTokenizer(siglip_dir / "tokenizer.json")(EDGE_TEXTS)
    reference = sentencepiece_reference(siglip_dir, EDGE_TEXTS, open_clip)
    assert ours.shape == (len(EDGE_TEXTS), 64)
    np.testing.assert_array_equal(ours, reference)
    assert (ours[EDGE_TEXTS.index("")] == 1).all()  # padding id 1, not T5's <pad> 0
    long = ours[EDGE_TEXTS.index("water " * 90)]
    assert long[-1] == 1 and (long[:-1] != 1).all()  # truncated to 64 with the end token last


def test_siglip_pad_token_read_from_either_file_or_the_constant(tmp_path, siglip_dir):
    import shutil

    folder = tmp_path / "no_special_map"
    folder.mkdir()
    shutil.copy(siglip_dir / "tokenizer.json", folder / "tokenizer.json")
    # transformers 5 writes no special_tokens_map.json; neither file at all: the SigLIP constant 1
    assert SigLIPTokenizer(folder / "tokenizer.json").pad_id == 1
    (folder / "tokenizer_config.json").write_text('{"pad_token": "<pad>"}')
    assert SigLIPTokenizer(folder / "tokenizer.json").pad_id == 0  # what the files say wins


def test_tokenizer_files_resolve_like_weights(tmp_path, siglip_dir, monkeypatch):
    cfg = siglip_text(32, 2, 4, 4.0, repos=("org/weights-repo",))
    # tokenizer= a folder or the file
    assert resolve_tokenizer_file("m", cfg, siglip_dir, None) == str((siglip_dir / "tokenizer.json").resolve())
    with pytest.raises(errors.WeightsError, match="does not exist"):
        resolve_tokenizer_file("m", cfg, tmp_path / "nowhere.json", None)
    # beside the weights file (the Hub snapshot layout)
    weights = siglip_dir / "open_clip_model.safetensors"
    assert resolve_tokenizer_file("m", cfg, None, str(weights)) == str(siglip_dir / "tokenizer.json")
    # nothing local and offline: the weights' error, naming the download and tokenizer=
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(errors.WeightsError, match=r"no network.*hf download timm/ViT-B-16-SigLIP tokenizer\.json.*tokenizer="):
        resolve_tokenizer_file("m", cfg, None, str(tmp_path / "w.safetensors"))
    # CLIP needs nothing: the shipped vocabulary
    from xrembed.models.text_config import clip_text

    assert resolve_tokenizer_file("m", clip_text(32, 4, 16), None, None) is None
