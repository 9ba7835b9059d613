import pytest

from xrembed import tiling


@pytest.mark.parametrize("tokens", list(range(1, 80)))
@pytest.mark.parametrize("tile_tokens", [1, 4, 14])
def test_layout_covers_every_token_once_on_the_lattice(tokens, tile_tokens):
    tiles = tiling.tile_layout(tokens, tile_tokens)
    owned = [t for tile in tiles for t in range(tile.own_start, tile.own_stop)]
    assert owned == list(range(tokens))
    for tile in tiles:
        # every tile reads inside [0, max(tokens, tile_tokens)) and owns only tokens it reads
        assert 0 <= tile.start <= tile.own_start < tile.own_stop <= tile.start + tile_tokens
        assert tile.start + tile_tokens <= max(tokens, tile_tokens)
    # all tiles but a shifted last one start on multiples of the tile size
    assert all(t.start % tile_tokens == 0 for t in tiles[:-1])


def test_shifted_edge_tile_holds_real_pixels():
    # 500 px, patch 16 -> 32 tokens; tiles of 14 tokens: the last one starts at token 18 (288 px)
    tiles = tiling.tile_layout(tiling.token_count(500, 16), 14)
    assert [(t.start, t.own_start, t.own_stop) for t in tiles] == [(0, 0, 14), (14, 14, 28), (18, 28, 32)]
    assert 18 * 16 + 224 - 500 < 16  # less than one patch lies beyond the raster


@pytest.mark.parametrize("tokens", list(range(1, 120)))
@pytest.mark.parametrize("per_chunk", [1, 2, 3])
def test_chunks_keep_every_tile_inside_its_owner(tokens, per_chunk):
    tile_tokens = 14
    sizes = tiling.chunk_tokens(tokens, tile_tokens, per_chunk)
    assert sum(sizes) == tokens
    start = 0
    for size in sizes:
        # a chunk's own layout equals the global layout restricted to it
        local = tiling.tile_layout(size, tile_tokens)
        global_tiles = [t for t in tiling.tile_layout(tokens, tile_tokens) if start <= t.own_start < start + size]
        assert [(t.start + start, t.own_start + start, t.own_stop + start) for t in local] == [
            (t.start, t.own_start, t.own_stop) for t in global_tiles
        ]
        start += size


def test_pixel_chunks_end_at_the_raster_edge():
    assert tiling.pixel_chunks((14, 18), 500, 16) == (224, 276)
