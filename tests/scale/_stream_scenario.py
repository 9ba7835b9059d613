"""The grid the streaming tests write: the bundled sample scene through dofa-tiny (random weights), in
small chunks (49 regions of 8 x 8 cells), so that a kill can land between many regions."""

import xrembed


def embeddings(**options):
    raster = xrembed.open_raster("sample").chunk({"y": 64, "x": 64})
    return raster.rsembed.embed("dofa-tiny", **{"weights": "random", "tiles_per_chunk": 2, **options})
