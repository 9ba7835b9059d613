"""Zero-shot class maps vs plain embedding on the same raster: what scoring labels costs on top of ``embed``.

    python benchmarks/bench_text.py [--model remoteclip] [--variant vit_b32] [--size 448] [--labels 10]

On a ``size`` x ``size`` px crop of the bundled Sentinel-2 sample (B04, B03, B02), with random weights (the
forward costs the same as with the official ones), each computed once after a warm-up:

* ``embed_grid``: ``da.rsembed.embed(model)``, the token grid;
* ``embed_joint``: ``da.rsembed.embed(model, space="joint")``, the token grid mapped through the image head;
* ``classify_grid``: ``da.rsembed.classify(labels, model=model, template=...)``, the ``(label, y, x)`` map;
* ``encode_text``: the labels alone (with the template), through the text tower;
* ``classify_pooled``: ``output="pooled"`` (resize mode, the models' own recipe).

DOFA-CLIP reads a tiny offline-trained SigLIP tokenizer (:mod:`xrembed.text.testing`), since the Hub's
``tokenizer.json`` is not reachable here; tokenizing costs microseconds either way. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings

import torch

import xrembed
from xrembed import engine
from xrembed.text.encode import clear_text_models

warnings.simplefilter("ignore")
LABELS = ["water", "sand dunes", "a town", "a harbour", "forest", "farmland", "bare rock", "a road", "clouds", "snow",
          "an airport", "a river", "a beach", "grassland", "a quarry", "wetland"]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="remoteclip")
    parser.add_argument("--variant", default=None)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--labels", type=int, default=10)
    args = parser.parse_args()
    da = xrembed.open_raster("sample", bands=["B04", "B03", "B02"])
    da = da.isel(y=slice(0, args.size), x=slice(0, args.size)).chunk({"y": 224, "x": 224})
    labels = LABELS[: args.labels]
    template = "a satellite image of {}."
    options = {"weights": "random", "variant": args.variant}
    tokenizer = None
    if args.model.startswith("dofa_clip"):
        from xrembed.text.testing import write_siglip_tokenizer

        tokenizer = write_siglip_tokenizer(tempfile.mkdtemp())
    # warm-up: load both towers once (the model cache keeps them)
    da.rsembed.classify(labels[:1], model=args.model, tokenizer=tokenizer, **options).compute()
    result = {
        "model": args.model, "variant": args.variant, "size_px": args.size, "labels": len(labels),
        "torch_threads": torch.get_num_threads(),
        "embed_grid_s": timed(lambda: da.rsembed.embed(args.model, **options).compute()),
        "embed_joint_s": timed(lambda: da.rsembed.embed(args.model, space="joint", **options).compute()),
        "classify_grid_s": timed(
            lambda: da.rsembed.classify(labels, model=args.model, template=template, tokenizer=tokenizer, **options).compute()
        ),
        "encode_text_s": timed(
            lambda: xrembed.encode_text(args.model, labels, template=template, tokenizer=tokenizer, **options)
        ),
        "classify_pooled_s": timed(
            lambda: da.rsembed.classify(
                labels, model=args.model, template=template, tokenizer=tokenizer, output="pooled", **options
            ).compute()
        ),
    }
    result["classify_over_embed"] = result["classify_grid_s"] / result["embed_grid_s"]
    print(json.dumps(result, indent=1))
    engine.clear_runtimes()
    clear_text_models()


if __name__ == "__main__":
    main()
