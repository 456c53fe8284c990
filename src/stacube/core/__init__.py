"""The foundation every layer shares: request parameters and grids, one module each.

* :mod:`~stacube.core.bbox` - bounding boxes;
* :mod:`~stacube.core.times` - instants, intervals, item datetimes, numpy times;
* :mod:`~stacube.core.crs` - coordinate reference systems ("EPSG code, else WKT");
* :mod:`~stacube.core.period` - output periods (``P16D``, ``P1M``...);
* :mod:`~stacube.core.methods` - compositing method names;
* :mod:`~stacube.core.geobox` - the GeoBox JSON round trip and the sources' native pixel grid;
* :mod:`~stacube.core.grids` - named output grids (native, WebMercatorQuad, EASE-Grid 2.0);
* :mod:`~stacube.core.indices` - spectral index names and formulas (spyndex);
* :mod:`~stacube.core.spec` - the base model of validated request parameters;
* :mod:`~stacube.core.imports` - import costs of libraries (odc-geo without dask's import).

Nothing here imports from the rest of stacube except :mod:`stacube.errors`.
"""
