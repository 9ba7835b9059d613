"""Where rasters come from: local files (this package), Earth Engine and STAC (later)."""
