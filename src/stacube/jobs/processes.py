"""Processes: user Python functions run tile by tile on the job engine.

A process is a module that defines ``execute(cube, **parameters)`` (see
:mod:`stacube.algo.process` for ``cube`` and what it returns). It may also define:

* ``Parameters``: a pydantic model of the parameters, or ``PARAMETERS``: their JSON Schema
  (checked with ``jsonschema``); without either, the parameters must fit ``execute``'s signature;
* ``OUTPUTS``: ``{name: {"dtype": ..., "nodata": ...}}`` (default: read off the first result);
* ``HALO``: pixels of neighbouring data each tile needs (default 0);
* ``prepare_job(job, parameters)``: gets the job's keys (``bands``, ``indices``, ``datetime``,
  ``period``... as given, None when not) and the checked parameters, and returns the keys to
  set: defaults the process derives from its parameters (the bands it reads), or raises
  ``ValueError`` when the job cannot give what the process needs (one line).

A process is found by the path of its module (configuration files, the CLI) or by name among
the *registered processes*: stacube's own analysis processes (:data:`BUILTIN`, the package
:mod:`stacube.apps`) and the entry points of the group ``stacube.processes`` whose value is a
module (``name = "package.module"``) or its ``execute`` function. Only registered processes run
from HTTP requests; no endpoint accepts code. Its *version* is the sha256 (12 hex digits) of the
module's source file: a job records it, and a worker refuses to run a changed module for it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from stacube.algo.process import Execute, Output
from stacube.core.spec import validation_message
from stacube.errors import InvalidInput, NotFound
from stacube.jobs.spec import PROCESS_NAME, OutputDecl, ProcessSpec

GROUP = "stacube.processes"
#: stacube's own processes, registered whether or not the installed distribution's entry points
#: are (an editable install made before they were added); the same names as its entry points,
#: which no other package's entry point replaces.
BUILTIN = {
    "water": "stacube.apps.water",
    "ndvi-anomaly": "stacube.apps.ndvi_anomaly",
    "change": "stacube.apps.change",
}


@dataclass(frozen=True)
class Process:
    """A loaded process.

    Attributes:
        name: registered name, or the module's file stem.
        ref: what finds it again: the module's absolute path, or the registered name.
        module: the module.
        version: sha256 of the module's source (12 hex digits).
    """

    name: str
    ref: str
    module: ModuleType
    version: str

    @property
    def execute(self) -> Execute:
        return self.module.execute

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.module) or inspect.getdoc(self.execute) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def halo(self) -> int:
        return int(getattr(self.module, "HALO", 0) or 0)

    @property
    def outputs(self) -> dict[str, dict] | None:
        declared = getattr(self.module, "OUTPUTS", None)
        return {k: OutputDecl.model_validate(v).model_dump() for k, v in declared.items()} if declared else None

    def parameters_schema(self) -> dict | None:
        """The JSON Schema of the parameters (from ``Parameters`` or ``PARAMETERS``), or None."""
        model = getattr(self.module, "Parameters", None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_json_schema()
        schema = getattr(self.module, "PARAMETERS", None)
        return dict(schema) if isinstance(schema, dict) else None

    def prepare_job(self, job: dict, parameters: dict) -> dict:
        """The job keys the process sets (its ``prepare_job`` hook; ``{}`` without one).

        Raises:
            InvalidInput: the hook refuses the job (its one-line reason).
        """
        hook = getattr(self.module, "prepare_job", None)
        if not callable(hook):
            return {}
        try:
            return dict(hook(dict(job), dict(parameters)) or {})
        except (ValueError, InvalidInput) as exc:
            raise InvalidInput(f"process {self.name}: {exc}") from None

    def check_parameters(self, parameters: dict) -> dict:
        """The parameters as ``execute`` will get them (a pydantic model's defaults filled in).

        Raises:
            InvalidInput: one line naming the first bad parameter.
        """
        if not isinstance(parameters, dict):
            raise InvalidInput("parameters: expected a mapping of names to values")
        model = getattr(self.module, "Parameters", None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            try:
                return model.model_validate(parameters).model_dump(mode="json")
            except ValidationError as exc:
                raise InvalidInput(f"parameters.{validation_message(exc)}") from exc
        schema = getattr(self.module, "PARAMETERS", None)
        if isinstance(schema, dict):
            import jsonschema  # lazy: only processes with a JSON Schema need it

            error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(parameters))
            if error is not None:
                where = ".".join(str(p) for p in error.absolute_path)
                raise InvalidInput(f"parameters{'.' + where if where else ''}: {error.message}")
            return parameters
        try:
            inspect.signature(self.execute).bind(None, **parameters)
        except TypeError as exc:
            raise InvalidInput(f"parameters: execute(cube, **parameters) would fail: {exc}") from None
        return parameters


def source_version(path: str | Path) -> str:
    """The sha256 of a file's bytes, 12 hex digits."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


_MODULES: dict[tuple[str, str], ModuleType] = {}


def _check_module(module: ModuleType, where: str) -> ModuleType:
    execute = getattr(module, "execute", None)
    if not callable(execute):
        raise InvalidInput(f"{where} defines no execute(cube, **parameters) function")
    params = list(inspect.signature(execute).parameters.values())
    if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise InvalidInput(f"{where}: execute must take the cube as its first argument")
    return module


def load_module_file(path: str | Path) -> Process:
    """The process defined by the module at ``path`` (imported once per process and version).

    Raises:
        NotFound: no such file.
        InvalidInput: not a Python file, it fails to import, or defines no ``execute``.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise NotFound(f"no process module at {path}")
    if path.suffix != ".py":
        raise InvalidInput(f"{path}: a process module is a .py file")
    version = source_version(path)
    key = (str(path), version)
    if key not in _MODULES:
        name = f"stacube_process_{path.stem}_{version}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look modules up by name
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise InvalidInput(f"{path.name} does not import: {type(exc).__name__}: {exc}") from exc
        _MODULES[key] = _check_module(module, path.name)
    return Process(path.stem.replace("_", "-"), str(path), _MODULES[key], version)


def registered() -> dict[str, Any]:
    """The registered processes: ``{name: entry point}`` of the group ``stacube.processes``,
    and :data:`BUILTIN` (which wins over an entry point of the same name)."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    found.update({name: EntryPoint(name, value, GROUP) for name, value in BUILTIN.items()})
    return found


def load_registered(name: str) -> Process:
    """A registered process by name.

    Raises:
        NotFound: no process of that name is registered.
        InvalidInput: its entry point does not load or defines no ``execute``.
    """
    ep = registered().get(name)
    if ep is None:
        known = ", ".join(sorted(registered())) or "none"
        raise NotFound(f"no registered process {name!r} (registered: {known})")
    try:
        target = ep.load()
    except Exception as exc:
        raise InvalidInput(f"process {name!r} ({ep.value}) does not load: {type(exc).__name__}: {exc}") from exc
    module = target if isinstance(target, ModuleType) else inspect.getmodule(target)
    if module is None:
        raise InvalidInput(f"process {name!r}: {ep.value} is neither a module nor a module's function")
    _check_module(module, f"process {name!r} ({ep.value})")
    source = inspect.getsourcefile(module)
    return Process(name, name, module, source_version(source) if source else "unknown")


def load_process(ref: str, base: Path | None = None) -> Process:
    """A process by module path (relative to ``base``) or registered name.

    A reference ending in ``.py`` or holding a path separator is a path; anything else a name.

    Raises:
        NotFound / InvalidInput: see :func:`load_module_file` and :func:`load_registered`.
    """
    if ref.endswith(".py") or "/" in ref or "\\" in ref:
        path = Path(ref).expanduser()
        return load_module_file(path if path.is_absolute() or base is None else base / path)
    if not PROCESS_NAME.match(ref):
        raise InvalidInput(f"{ref!r} is neither a module path (*.py) nor a process name")
    return load_registered(ref)


_JOB_PROCESSES: dict[tuple[str, str], Process] = {}


def process_of(spec: ProcessSpec) -> Process:
    """The process a job runs, as it was when the job was submitted (found and checked once per
    worker process: looking up entry points costs ~20 ms, more than a small tile's work).

    Raises:
        InvalidInput: its source changed since (the job cannot be finished with other code).
    """
    key = (spec.process, spec.version)
    if key not in _JOB_PROCESSES:
        process = load_process(spec.process)
        if process.version != spec.version:
            raise InvalidInput(f"process {spec.process_name!r} changed since the job was submitted (version "
                               f"{process.version}, the job's {spec.version}): submit it again")
        if len(_JOB_PROCESSES) >= 16:
            _JOB_PROCESSES.clear()
        _JOB_PROCESSES[key] = process
    return _JOB_PROCESSES[key]


def declared_outputs(spec: ProcessSpec) -> dict[str, Output] | None:
    """The job's outputs as :class:`~stacube.algo.process.Output` (None: not declared)."""
    if spec.outputs is None:
        return None
    return {name: Output(o.dtype, o.nodata) for name, o in spec.outputs.items()}


def build_process_spec(process: Process, **params) -> ProcessSpec:
    """A validated :class:`ProcessSpec` for ``process`` (its parameters checked, the keys its
    ``prepare_job`` sets applied, its ``HALO`` and ``OUTPUTS`` as defaults of ``halo`` and
    ``outputs``).

    Raises:
        InvalidInput: one line naming the first bad parameter.
    """
    parameters = process.check_parameters(params.pop("parameters", None) or {})
    params.update(process.prepare_job(params, parameters))
    if params.get("halo") is None:
        params["halo"] = process.halo
    if params.get("outputs") is None:
        params["outputs"] = process.outputs
    return ProcessSpec.build(process=process.ref, process_name=process.name, version=process.version,
                             parameters=parameters, **params)


#: Keys a request cannot set: they come from the registered process itself.
REQUEST_FORBIDDEN = ("process_name", "version", "method")


def registered_spec(params: dict) -> ProcessSpec:
    """The :class:`ProcessSpec` of a request naming a registered process (``{"process": name,
    "parameters": {...}, "collections": [...], "bbox": ..., "datetime": ...}``): what the jobs
    API accepts; a module path, or any name not registered, is refused.

    Raises:
        InvalidInput: an unregistered name, a key the process sets itself, bad parameters.
    """
    params = dict(params)
    name = params.pop("process")
    if not isinstance(name, str) or not PROCESS_NAME.match(name) or name not in registered():
        known = ", ".join(sorted(registered())) or "none"
        raise InvalidInput(f"process: {str(name)[:80]!r} is not a registered process (registered: {known}); "
                           "no request runs code it brings")
    for key in REQUEST_FORBIDDEN:
        if key in params:
            raise InvalidInput(f"{key}: set by the registered process, not by the request")
    return build_process_spec(load_registered(name), **params)


def process_catalog() -> list[dict]:
    """The registered processes that load, as documents: ``name``, ``version``,
    ``description``, ``parameters`` (JSON Schema or None) and ``outputs`` (declared or None),
    by name."""
    out = []
    for name in sorted(registered()):
        try:
            process = load_registered(name)
        except (InvalidInput, NotFound):
            continue
        out.append({"name": name, "version": process.version, "description": process.description,
                    "parameters": process.parameters_schema(), "outputs": process.outputs})
    return out
