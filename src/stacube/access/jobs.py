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
* Ownership: the job's ``workspace`` is the caller's workspace (None when anonymous); its id is scoped by
  it, so two workspaces submitting the same parameters get two jobs. ``GET /jobs`` lists the caller's
  jobs (anonymous: jobs without a workspace; admin: all), other jobs answer 404.
"""

from __future__ import annotations

import hashlib

from stacube.access.policy import Principal
from stacube.access.workspaces import AccessStore
from stacube.catalog.pgstac import Catalog
from stacube.errors import Conflict, NotFound
from stacube.settings import Settings


def job_workspace(principal: Principal) -> str | None:
    """The ``workspace`` recorded for a job of ``principal``: its workspace."""
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
    if workspace is not None and not spec.output_collection:
        spec = spec.model_copy(update={"output_collection": f"{spec.collections[0]}-{spec.method}-{workspace}"})
    out = spec.output_collection or f"{spec.collections[0]}-{spec.method}"
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
    if workspace is not None:
        AccessStore(settings).claim(collection_id, workspace)


def visible_job(principal: Principal, job: dict) -> bool:
    """Whether ``principal`` may see (and cancel) ``job``."""
    return principal.is_admin or job.get("workspace") == job_workspace(principal)
