"""Access control of job outputs served for download (``/files`` under ``stacube up``).

Outputs live under ``<output root>/<job id>/...`` (and Zarr cubes under ``cubes/<name>/...``).
:class:`AuthorisedFiles` is Starlette's ``StaticFiles`` authorising the path it is about to
serve - normalised first (``..``, ``%2e%2e``, ``.`` and repeated slashes resolved by
``StaticFiles.get_path``), so what is checked is the file that would be read. A caller who may
read every collection gets any file. Others get a job's files only when they may read the job's
output collection, a cube's files when they may read the collection of that name (a cube without
one: not at all), and never the staging area (``tmp/``). Anything else answers the same 404 as a
missing file.

Errors are the services' JSON errors (``{"code", "description"}``): 404 (missing or not
allowed), 405 (not GET or HEAD), and a ``Range`` that is not served, 400 or 416 (with
``Content-Range: bytes */<size>``: :mod:`stacube_services.ranges`).
"""

from __future__ import annotations

import os

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from stacube_services.access.service import AccessService, principal_of
from stacube_services.errors import error_response
from stacube_services.ranges import file_range_refusal

_CODES = {401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed"}
_REASONS = {404: "no such file (or not yours to read)", 405: "files are read with GET or HEAD",
            401: "the file cannot be read"}
JOB_SQL = ("SELECT report->>'collection', plan->>'output_collection', parameters->>'output_collection' "
           "FROM stacube.jobs WHERE id = %s")


class AuthorisedFiles(StaticFiles):
    """``StaticFiles`` of the outputs directory, authorised per normalised path.

    Args:
        service: the :class:`AccessService` of the enclosing app.
        **kwargs: ``StaticFiles``'s (``directory``...).
    """

    def __init__(self, *, service: AccessService, **kwargs):
        super().__init__(**kwargs)
        self.service = service

    async def get_response(self, path: str, scope):
        try:
            if not await self.allowed(path, scope):
                raise HTTPException(status_code=404)
            return await super().get_response(path, scope)
        except HTTPException as exc:
            response = error_response(exc.status_code, _CODES.get(exc.status_code, "HTTPError"),
                                      _REASONS.get(exc.status_code, exc.detail))
            response.headers.update(exc.headers or {})
            return response

    def file_response(self, full_path, stat_result, scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if isinstance(response, FileResponse):
            refused = file_range_refusal(scope, response, stat_result.st_size)
            if refused is not None:
                return refused
        return response

    async def allowed(self, path: str, scope) -> bool:
        """Whether the caller may read ``path`` (already normalised, relative to the directory)."""
        parts = [p for p in path.split(os.sep) if p and p != "."]
        if parts[:1] == [".."] or os.path.isabs(path):
            return False
        principal = principal_of(scope)
        view = await self.service.view(scope)
        if not view.restricts(principal):
            return True
        if not parts or parts[0] == "tmp":
            return False
        if parts[0] == "cubes":
            if len(parts) < 2:
                return False
            return parts[1] in set(await self.service.collection_ids()) and view.can_read(principal, parts[1])
        rows = await self.service.fetch(JOB_SQL, parts[0])
        if not rows:
            return False
        collection = next((c for c in rows[0] if c), None)
        return collection is not None and view.can_read(principal, collection)
