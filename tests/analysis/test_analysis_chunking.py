"""Property: the raster analyses give the same values for any chunking of the same grid (hypothesis picks the
chunks), because their fits see a sample drawn from the grid's shape and seed only, never from its chunks."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xrembed

from analysis_raster_helpers import make_grid

EMB = make_grid(shape=(29, 23), dim=6, nan_cells=[(0, 0), (4, 17), (28, 22)])
VECTOR = EMB.values[:, 10, 10]
EAGER = {
    "pca": EMB.rsembed.pca(3).values,
    "rgb": EMB.rsembed.to_rgb().values,
    "kmeans": EMB.rsembed.kmeans(4).values,
    "similarity": EMB.rsembed.similarity(VECTOR).values,
    "change": xrembed.change(EMB, EMB[::-1].assign_coords(embedding=EMB.embedding)).values,
}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(y=st.integers(5, 29), x=st.integers(5, 23), e=st.integers(2, 6))  # tiny chunks only slow it down
def test_any_chunking_gives_the_eager_values(y, x, e):
    emb = EMB.chunk({"y": y, "x": x, "embedding": e})
    np.testing.assert_allclose(emb.rsembed.pca(3).values, EAGER["pca"], atol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(emb.rsembed.to_rgb().values, EAGER["rgb"])
    np.testing.assert_array_equal(emb.rsembed.kmeans(4).values, EAGER["kmeans"])
    np.testing.assert_allclose(emb.rsembed.similarity(VECTOR).values, EAGER["similarity"], atol=1e-6, equal_nan=True)
    other = EMB[::-1].assign_coords(embedding=EMB.embedding).chunk({"y": x, "x": y})
    np.testing.assert_allclose(xrembed.change(emb, other).values, EAGER["change"], atol=1e-6, equal_nan=True)
