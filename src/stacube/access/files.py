"""Access control of job outputs served for download (``/files`` under ``stacube up``).

Outputs live under ``<output root>/<job id>/...`` (and Zarr cubes under ``cubes/<name>/...``).
A caller who may read every collection gets any file. Others get a job's files only when they
may read the job's output collection, a cube's files when they may read the collection of that
name (a cube without one: not at all), and never the staging area (``tmp/``). Anything else
answers the same 404 as a missing file.
"""

from __future__ import annotations

from stacube.access.asgi import DB_ERRORS, AccessService, error_for, principal_of, relative_path
from stacube.errors import StacubeError

JOB_SQL = ("SELECT report->>'collection', plan->>'output_collection', parameters->>'output_collection' "
           "FROM stacube.jobs WHERE id = %s")


class FilesAccess:
    """Wraps the static-files app of the outputs; see the module docstring.

    Args:
        service: the :class:`AccessService` of the enclosing app.
    """

    def __init__(self, app, *, service: AccessService):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            try:
                allowed = await self.allowed(scope)
            except (StacubeError, *DB_ERRORS) as exc:
                await error_for(exc)(scope, receive, send)
                return
            if not allowed:
                from starlette.responses import JSONResponse

                await JSONResponse({"detail": "Not Found"}, status_code=404)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def allowed(self, scope) -> bool:
        principal = principal_of(scope)
        view = await self.service.view(scope)
        if not view.restricts(principal):
            return True
        parts = [p for p in (relative_path(scope) or "").split("/") if p]
        if not parts or parts[0] == "tmp":
            return False
        if parts[0] == "cubes":
            if len(parts) < 2:
                return False
            return parts[1] in set(await self.service.collection_ids()) and view.can_read(principal, parts[1])
        rows = await self.service.db.fetch(JOB_SQL, parts[0])
        if not rows:
            return False
        collection = next((c for c in rows[0] if c), None)
        if collection is None:
            return False
        return view.can_read(principal, collection)
