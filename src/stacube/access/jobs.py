"""Access rules of compositing jobs submitted over HTTP.

* Inputs: every collection must be readable by the caller (else 404 ``unknown collection``, as
  for one that does not exist).
* Output: a workspace member's job writes into a collection of its own workspace. Without
  ``output_collection`` it is ``<first collection>-<method>-<workspace>``; a new output collection is
  claimed for the workspace (private) when the job registers its items. An output collection of
  another workspace, or (for a member) an existing collection without a workspace, answers 409.
  Anonymous jobs (and admin jobs without a workspace) keep the open behaviour: a new collection gets
  no access row (public); an existing one must be a derived collection (made by a job) that no
  workspace owns - never a source collection. Admins write anywhere.
* Ownership: the job's ``workspace`` is the caller's workspace (None when anonymous; ``@admin`` for
  an admin without one, so anonymous callers never see admins' jobs); its id is scoped by it, so
  two workspaces submitting the same parameters get two jobs. ``GET /jobs`` lists the caller's
  jobs (anonymous: anonymous jobs; admin: all), other jobs answer 404.
* Limits (:func:`check_limits`): anonymous callers may submit jobs only when access control is
  off (no API key, no OIDC provider, no key in the catalog) or ``STACUBE_ANONYMOUS_JOBS`` allows
  them; a job larger than the caller's quota (output pixels x scenes x bands: the workspace's
  own, else ``STACUBE_JOB_QUOTA``; ``STACUBE_ANONYMOUS_JOB_QUOTA`` for anonymous callers while
  access control is on - without it they are everyone, with ``STACUBE_JOB_QUOTA``) or whose ``tile_size`` would
  not fit the tile memory budget (``STACUBE_TILE_MEMORY``) is refused (400); at most
  ``max_jobs`` of a workspace run at once (:class:`JobSlots`: the others wait, queued; a job
  that made no progress for ``job_max_age`` is stuck and takes no slot).
"""

from __future__ import annotations

import hashlib

from stacube.access.errors import Unauthorized
from stacube.access.policy import WORKSPACE_PATTERN, Principal
from stacube.access.workspaces import AccessStore
from stacube.catalog.pgstac import Catalog
from stacube.db.connection import DatabaseStore
from stacube.errors import Conflict, InvalidInput, NotFound
from stacube.jobs.estimate import JobSize
from stacube.jobs.state import stale_sql
from stacube.settings import Settings

#: The label of jobs of an admin without a workspace (not a workspace name: nothing is claimed).
ADMIN_LABEL = "@admin"


def job_workspace(principal: Principal) -> str | None:
    """The ``workspace`` label recorded for a job of ``principal``: its workspace, ``@admin`` for
    an admin without one, None for anonymous callers."""
    if principal.workspace is None and principal.is_admin:
        return ADMIN_LABEL
    return principal.workspace


def scoped_job_id(base_id: str, workspace: str | None) -> str:
    """The job id for a workspace: the parameters' id, scoped by the owning workspace when there is one."""
    if workspace is None:
        return base_id
    method, _, digest = base_id.rpartition("-")
    scoped = hashlib.sha256(f"{digest}\0{workspace}".encode()).hexdigest()[:12]
    return f"{method}-{scoped}"


def _is_derived(doc: dict) -> bool:
    return any(link.get("rel") == "derived_from" for link in doc.get("links") or [] if isinstance(link, dict))


def check_job(settings: Settings, principal: Principal, spec):
    """Check a job's inputs and output for ``principal``; returns the spec to run (with the
    member's default output collection filled in).

    Raises:
        NotFound: an input collection the caller may not read (or that does not exist).
        Conflict: the output collection is not the caller's to write.
    """
    view = AccessStore(settings).view()
    for collection in spec.collections:
        if not view.can_read(principal, collection):
            raise NotFound(f"unknown collection {collection!r}")
    if principal.is_admin:
        return spec
    workspace = principal.workspace
    made = getattr(spec, "process_name", None) or spec.method  # a process's outputs: by its name
    if workspace is not None and not spec.output_collection:
        spec = spec.model_copy(update={"output_collection": f"{spec.collections[0]}-{made}-{workspace}"})
    out = spec.output_collection or f"{spec.collections[0]}-{made}"
    row = view.get(out)
    taken = f"output collection {out!r} is not available to {principal.describe()}; choose another output_collection"
    if row is not None:
        if workspace is None or row.workspace != workspace:
            raise Conflict(taken)
        return spec
    catalog = Catalog(settings)
    if out in catalog.collection_ids():
        if workspace is not None or not _is_derived(catalog.get_collection(out)):
            raise Conflict(taken)
    return spec


def output_claim(settings: Settings):
    """The ``on_register`` callback of a job (:func:`stacube.jobs.tasks.finalize`): before the
    output collection is written, claim it for the job's workspace (nothing for jobs without
    one)."""

    def claim(collection_id: str, job: dict) -> None:
        claim_output(settings, collection_id, job.get("workspace"))

    return claim


def claim_output(settings: Settings, collection_id: str, workspace: str | None) -> None:
    """Before registering a job's items: give a new output collection to the job's workspace.

    Raises:
        Conflict: the collection belongs to another workspace.
    """
    if workspace is not None and WORKSPACE_PATTERN.match(workspace):
        AccessStore(settings).claim(collection_id, workspace)


def visible_job(principal: Principal, job: dict) -> bool:
    """Whether ``principal`` may see (and cancel) ``job``."""
    return principal.is_admin or job.get("workspace") == job_workspace(principal)


def access_control_on(settings: Settings) -> bool:
    """Whether callers can authenticate at all: an admin key or an OIDC provider is configured,
    or the catalog holds an active API key."""
    return bool(settings.api_key or settings.oidc_jwks) or AccessStore(settings).has_active_keys()


def check_submitter(settings: Settings, principal: Principal) -> None:
    """Refuse an anonymous caller while anonymous jobs are off (see the module docstring).

    Raises:
        Unauthorized: so.
    """
    if principal.is_anonymous:
        allowed = settings.anonymous_jobs if settings.anonymous_jobs is not None else not access_control_on(settings)
        if not allowed:
            raise Unauthorized("jobs need an API key or a bearer token (anonymous jobs are off: "
                               "STACUBE_ANONYMOUS_JOBS)")


def check_limits(settings: Settings, principal: Principal, size: JobSize, spec) -> None:
    """Refuse a job above the caller's limits (see the module docstring).

    Raises:
        InvalidInput: the job is above the caller's quota, or its ``tile_size`` above what the
            tile memory budget allows.
    """
    if spec.tile_size and spec.tile_size > size.tile_edge:
        raise InvalidInput(f"tile_size {spec.tile_size} px needs about "
                           f"{size.tile_bytes(spec.tile_size) >> 20} MiB; "
                           f"the tile memory budget (STACUBE_TILE_MEMORY) allows at most {size.tile_edge} px")
    if principal.is_admin:
        return
    if principal.is_anonymous and access_control_on(settings):
        quota, setting = settings.anonymous_job_quota, "STACUBE_ANONYMOUS_JOB_QUOTA"
    elif principal.is_anonymous:  # no access control: anonymous callers are everyone
        quota, setting = settings.job_quota, "STACUBE_JOB_QUOTA"
    else:
        own, _ = AccessStore(settings).workspace_limits(principal.workspace)
        quota, setting = (own, f"quota of workspace {principal.workspace}") if own else (settings.job_quota,
                                                                                          "STACUBE_JOB_QUOTA")
    if size.samples > quota:
        raise InvalidInput(f"the job would read {size.samples:,} values ({size.pixels:,} output pixels x "
                           f"{size.scenes} scenes x {size.bands} bands); the limit is {quota:,} ({setting}): "
                           "choose a smaller bbox, a coarser resolution, a shorter time range or fewer bands")


class JobSlots(DatabaseStore):
    """At most ``max_jobs`` jobs of one workspace (or of anonymous callers) run at once; the
    others are *held* (``stacube.held_jobs``: recorded, state ``queued``, not launched) until a
    slot frees (:meth:`releasable`). Admins' jobs are never held.

    Args:
        settings: the catalog database and ``max_jobs``.
    """

    #: Jobs of a label that take a slot: active, not held, not stuck (:func:`stale_sql` with
    #: ``job_max_age``: a job whose process died stops taking a slot once it is stuck, as a
    #: resubmission would start it afresh). Parameters: label, the job asking, ``job_max_age``.
    ACTIVE_SQL = ("SELECT count(*) AS n FROM stacube.jobs j WHERE j.workspace IS NOT DISTINCT FROM %s "
                  "AND j.state IN ('queued', 'running') AND j.id <> %s "
                  f"AND NOT ({stale_sql('j.')}) "
                  "AND NOT EXISTS (SELECT 1 FROM stacube.held_jobs h WHERE h.job_id = j.id)")

    def limit(self, label: str | None) -> int | None:
        """Jobs of ``label`` that may run at once (None: no limit)."""
        if label == ADMIN_LABEL:
            return None
        _, own = AccessStore(self.settings).workspace_limits(label)
        return own or self.settings.max_jobs

    def admit(self, job_id: str, label: str | None) -> bool:
        """True when the job may start now; else it is held (False)."""
        limit = self.limit(label)
        if limit is None:
            return True
        with self._conn() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"stacube-jobs:{label}",))
            if conn.execute(self.ACTIVE_SQL, (label, job_id, self.settings.job_max_age)).fetchone()["n"] < limit:
                conn.execute("DELETE FROM stacube.held_jobs WHERE job_id = %s", (job_id,))
                return True
            conn.execute("INSERT INTO stacube.held_jobs (job_id, label) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (job_id, label))
            return False

    def releasable(self) -> list[str]:
        """Held jobs a slot has freed for, oldest first; they are no longer held (launch them).
        Held jobs that were cancelled meanwhile are forgotten."""
        out = []
        with self._conn() as conn:
            conn.execute("DELETE FROM stacube.held_jobs h WHERE NOT EXISTS (SELECT 1 FROM stacube.jobs j "
                         "WHERE j.id = h.job_id AND j.state = 'queued')")
            held = conn.execute("SELECT job_id, label FROM stacube.held_jobs ORDER BY created").fetchall()
        for row in held:
            with self._conn() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"stacube-jobs:{row['label']}",))
                limit = self.limit(row["label"])
                active = conn.execute(self.ACTIVE_SQL, (row["label"], row["job_id"], self.settings.job_max_age))
                if limit is None or active.fetchone()["n"] < limit:
                    if conn.execute("DELETE FROM stacube.held_jobs WHERE job_id = %s RETURNING job_id",
                                    (row["job_id"],)).fetchone():
                        out.append(row["job_id"])
        return out

    def is_held(self, job_id: str) -> bool:
        with self._conn() as conn:
            return conn.execute("SELECT 1 FROM stacube.held_jobs WHERE job_id = %s", (job_id,)).fetchone() is not None
