"""Stream one grid to Zarr in a child process, for the kill-and-resume test (no doctests here).

Usage: python _stream_child.py STORE RESUME(0|1) SLOW_S [WINDOW]

With WINDOW, the same grid streams from an EmbedRequest, its graph built WINDOW regions a side at a time.

Each region's write is slowed by SLOW_S seconds before and after its chunk is written, so that a SIGKILL
sent at a random moment often lands between a chunk write and its record.
"""

import sys
import time
import warnings

import torch  # noqa: F401  (imported before READY: kill points fall in the streaming, not in imports)

import xrembed.testing

xrembed.testing.register_test_models()
from xrembed import stream

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _stream_scenario import embeddings, request


def main() -> None:
    warnings.simplefilter("ignore")
    store, resume, slow = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
    write = stream._write_region

    def slowed(*args, **kwargs):
        time.sleep(slow)
        result = write(*args, **kwargs)
        time.sleep(slow)
        return result

    stream._write_region = slowed
    window = int(sys.argv[4]) if len(sys.argv) > 4 else None
    emb = embeddings() if window is None else request()
    print("READY", flush=True)
    stream.to_zarr(emb, store, resume=resume, show_progress=False, batch_regions=4, window=window)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
