"""The end-to-end split of ``bench_scale.py rate`` on a GPU: read, prepare, forward and write time of
``xrembed.to_zarr`` from a local GeoTIFF, against the bare forward of the same model on the device.

    python benchmarks/bench_gpu.py [--size 4480] [--precision fp16] [--variant base]

Needs a CUDA device (refuses to run without one). Not yet run: no GPU was available when it was written;
quote its figures in docs/benchmarks.md when it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4480, help="raster side in px (multiples of 224)")
    parser.add_argument("--precision", default="fp16", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--variant", default="base")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device; on CPU run benchmarks/bench_scale.py rate.")
    args.device = "cuda"
    import xrembed.testing
    from bench_scale import rate

    xrembed.testing.register_test_models()
    result = rate(args)
    result["gpu"] = torch.cuda.get_device_name(0)
    from xrembed import engine

    result["raw_uint16_uploads"] = engine.raw_uploads("uint16", "cuda")  # the GeoTIFF is uint16
    result["precision"] = args.precision
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
