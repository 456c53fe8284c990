"""Who may read and write which collection: principals, access rows and the rules over them.

A *workspace* (tenant) owns collections. Each collection with an access row is ``private`` (its workspace
only), ``shared`` (its workspace, and read-only the workspaces in ``shared_with``) or ``public`` (everyone
reads, its workspace writes). A collection **without** an access row is public and writable by
admins only: catalogs made before access control, the demo and the sample products stay as
they were.

Principals:

* ``anonymous`` - no credentials: reads public collections;
* ``member`` - an API key or a token bound to a workspace: reads public collections, its workspace's and
  those shared with its workspace; writes its workspace's;
* ``admin`` - reads and writes everything.

The functions here are pure: the HTTP apps, the jobs API and the tests feed them the rows they
read from ``stacube.collection_access``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from stacube.errors import InvalidInput

VISIBILITIES = ("private", "shared", "public")
#: Workspace names: like collection ids (letters, digits, ``.``, ``_``, ``-``), at most 64 characters.
WORKSPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: A collection id no collection can have (stac-fastapi and stacube forbid ``/`` and ``:``):
#: a search restricted to nothing searches this one and finds nothing.
NO_COLLECTION = "stacube:none/"


@dataclass(frozen=True)
class Principal:
    """The caller of a request.

    Attributes:
        kind: ``anonymous``, ``member`` or ``admin``.
        workspace: the workspace the credentials are bound to (None: anonymous, or an admin key without one).
        subject: key id or token subject, for logs and job ownership (None when anonymous).
        via: ``api-key``, ``oidc`` or ``settings`` (the ``STACUBE_API_KEY`` admin key).
    """

    kind: str = "anonymous"
    workspace: str | None = None
    subject: str | None = None
    via: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"

    def describe(self) -> str:
        """``admin``, ``workspace alpha`` or ``anonymous``: for messages."""
        if self.is_admin:
            return "admin" + (f" of workspace {self.workspace}" if self.workspace else "")
        return f"workspace {self.workspace}" if self.workspace else "anonymous"


ANONYMOUS = Principal()


@dataclass(frozen=True)
class CollectionAccess:
    """One row of ``stacube.collection_access``."""

    collection: str
    workspace: str
    visibility: str = "private"
    shared_with: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"collection": self.collection, "workspace": self.workspace, "visibility": self.visibility,
                "shared_with": list(self.shared_with)}


def can_read(principal: Principal, access: CollectionAccess | None) -> bool:
    """Whether ``principal`` may read a collection with this access row (None: no row)."""
    if access is None or principal.is_admin or access.visibility == "public":
        return True
    if principal.workspace is None:
        return False
    if access.workspace == principal.workspace:
        return True
    return access.visibility == "shared" and principal.workspace in access.shared_with


def can_write(principal: Principal, access: CollectionAccess | None) -> bool:
    """Whether ``principal`` may change a collection (its document and items)."""
    if principal.is_admin:
        return True
    return access is not None and principal.workspace is not None and access.workspace == principal.workspace


def access_summary(principal: Principal, collection_id: str, access: CollectionAccess | None) -> dict:
    """What ``principal`` is told of a collection it may read: ``{"collection", "workspace"
    (None: no access row), "visibility", "manage" (whether it may change the access: the owning
    workspace or an admin)}``, plus ``"shared_with"`` for those who may change it (other
    readers do not learn which workspaces a collection is shared with)."""
    manage = can_write(principal, access)
    out = {"collection": collection_id, "workspace": access.workspace if access else None,
           "visibility": access.visibility if access else "public", "manage": manage}
    if manage:
        out["shared_with"] = list(access.shared_with) if access else []
    return out


@dataclass
class AccessView:
    """The access rows at one moment (one request), with the rules applied to them.

    Args:
        rows: ``{collection id: CollectionAccess}`` for every collection that has a row.
    """

    rows: Mapping[str, CollectionAccess] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple]) -> AccessView:
        """From ``(collection, workspace, visibility, shared_with)`` tuples."""
        return cls({r[0]: CollectionAccess(r[0], r[1], r[2], tuple(r[3] or ())) for r in rows})

    def get(self, collection_id: str) -> CollectionAccess | None:
        return self.rows.get(collection_id)

    def can_read(self, principal: Principal, collection_id: str) -> bool:
        return can_read(principal, self.rows.get(collection_id))

    def can_write(self, principal: Principal, collection_id: str) -> bool:
        return can_write(principal, self.rows.get(collection_id))

    def unreadable(self, principal: Principal) -> set[str]:
        """Collections with a row that ``principal`` may not read."""
        if principal.is_admin:
            return set()
        return {cid for cid, row in self.rows.items() if not can_read(principal, row)}

    def restricts(self, principal: Principal) -> bool:
        """True when some collection is hidden from ``principal`` (searches must be narrowed)."""
        return bool(self.unreadable(principal))

    def readable_among(self, principal: Principal, collection_ids: Iterable[str]) -> list[str]:
        """The ids ``principal`` may read, in order (ids without a row count as readable)."""
        return [c for c in collection_ids if self.can_read(principal, c)]

    def narrow(self, principal: Principal, requested: list[str] | None,
               all_ids: Iterable[str] | None = None) -> list[str] | None:
        """The ``collections`` a search of ``principal`` runs over.

        Args:
            requested: the search's own ``collections`` (None or empty: all).
            all_ids: every collection id (needed only when nothing was requested and the
                principal is restricted).

        Returns:
            None when the search needs no restriction; else the readable subset, or
            ``[NO_COLLECTION]`` when nothing is left (the search then finds nothing, exactly as
            one over collections that do not exist).
        """
        if not self.restricts(principal):
            return None
        if requested:
            allowed = self.readable_among(principal, requested)
        else:
            allowed = sorted(self.readable_among(principal, all_ids or ()))
        return allowed or [NO_COLLECTION]


def check_workspace_name(name: str) -> str:
    """Validate a workspace name.

    Raises:
        InvalidInput: not 1-64 letters, digits, ``.``, ``_`` or ``-`` starting with a letter or digit.
    """
    if not isinstance(name, str) or not WORKSPACE_PATTERN.match(name):
        raise InvalidInput(f"workspace name {name!r}: use 1-64 letters, digits, '.', '_' or '-' "
                           "(starting with a letter or digit)")
    return name


def check_visibility(value: str) -> str:
    """Validate a visibility.

    Raises:
        InvalidInput: not ``private``, ``shared`` or ``public``.
    """
    if value not in VISIBILITIES:
        raise InvalidInput(f"visibility {value!r}: choose private, shared or public")
    return value
