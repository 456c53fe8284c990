"""HTTP enforcement of stacube's access policy (:mod:`stacube.access`), one module per API.

* :mod:`.service` - who is calling (:class:`AuthMiddleware`: API keys, OIDC tokens) and the
  access rows of a request (:class:`AccessService`), through each app's own database pool;
* :mod:`.stac` - stac-fastapi: a route dependency on every ``/collections/{id}`` route, clients
  whose searches run over readable collections only, transaction clients that check the stored
  document;
* :mod:`.raster` - titiler-pgstac: a route dependency on every collection and search route, the
  search-registration dependency, readers that open hrefs through the read gate;
* :mod:`.cubes` - the Zarr cubes API's dependencies;
* :mod:`.files` - job outputs, authorised on the normalised path;
* :mod:`.jobs` - held jobs and the per-workspace job limits of the jobs API.
"""
