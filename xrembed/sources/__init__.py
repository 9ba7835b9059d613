"""Where rasters come from: local files (``raster``), STAC items (``stac``) and Earth Engine (``gee``)."""
