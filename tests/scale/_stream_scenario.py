"""The grid the streaming tests write: the bundled sample scene through dofa-tiny (random weights), in
small chunks (49 regions of 8 x 8 cells), so that a kill can land between many regions; ``request`` is the
same grid as an :class:`~xrembed.stream.EmbedRequest` (its graph built one window at a time)."""

import xrembed
from xrembed.stream import EmbedRequest

OPTIONS = {"weights": "random", "tiles_per_chunk": 2}


def raster():
    return xrembed.open_raster("sample").chunk({"y": 64, "x": 64})


def embeddings(**options):
    return raster().rsembed.embed("dofa-tiny", **{**OPTIONS, **options})


def request(**options):
    return EmbedRequest(raster(), "dofa-tiny", **{**OPTIONS, **options})
