"""Import costs of libraries that import what most processes never use.

:func:`install` (called by ``stacube/__init__``) adds a one-shot import hook for the modules of
:data:`HOOKS`, so that ``stacube`` commands and jobs start without what they do not use:

* ``odc.geo._interop``: ``odc.geo.math`` (imported by ``odc.geo`` itself) takes
  ``is_dask_collection`` from it, and it imports dask whenever dask is installed (odc-geo 0.5,
  ``_interop.__getattr__``): 0.09 s of dask's config, yaml, jinja2, toolz and psutil in every
  process that touches a GeoBox, although a value can only be a dask collection once dask is
  imported. Right after the module loads, its ``is_dask_collection`` becomes one that asks dask
  only when dask is imported (dask's own test then: the same answers).

Nothing changes for a module imported before stacube, or when a library is not installed.
"""

from __future__ import annotations

import sys
from importlib.machinery import PathFinder


def is_dask_collection(value) -> bool:
    """``dask.is_dask_collection(value)`` once dask is imported; False before (nothing can be
    a dask collection then)."""
    dask = sys.modules.get("dask")
    return dask is not None and dask.is_dask_collection(value)


def _patch_interop(module) -> None:
    module.is_dask_collection = is_dask_collection


#: ``{module: called with the module right after it has loaded}``
HOOKS = {
    "odc.geo._interop": _patch_interop,
}


class _Hooked:
    """A module's own loader, then the module's hook. No ``importlib.abc`` base: the import
    system asks a loader only for these methods, and ``import stacube`` alone then takes ~2 ms
    instead of ~12 ms."""

    def __init__(self, loader, after) -> None:
        self.loader, self.after = loader, after

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        self.after(module)

    def __getattr__(self, name: str):  # ``path``, ``get_resource_reader``... of the real loader
        return getattr(self.loader, name)


class _Finder:
    """A ``sys.meta_path`` finder: finds a hooked module as the path finder does and wraps its
    loader, once per module."""

    def __init__(self, hooks: dict) -> None:
        self.pending = dict(hooks)

    def find_spec(self, name, path=None, target=None):
        after = self.pending.pop(name, None)
        if after is None:
            return None
        if not self.pending:
            remove()
        spec = PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _Hooked(spec.loader, after)
        return spec


def install() -> None:
    """Add the import hook for the modules of :data:`HOOKS` not loaded yet (idempotent)."""
    pending = {name: after for name, after in HOOKS.items() if name not in sys.modules}
    if pending and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(pending))


def remove() -> None:
    """Take the hook out of ``sys.meta_path`` (it has fired, or is not wanted)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]
