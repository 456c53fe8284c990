"""Local and S3 output stores with staged, all-or-nothing commits.

A job writes into a *staging* area, so a resumed job finds the work of the interrupted run, and
its outputs become visible (referenced by the report and the catalog) only once committed:

* locally the staging area is ``<root>/tmp/<job id>/`` and :meth:`Staging.commit` renames it to
  ``<root>/<job id>/`` at once;
* on S3 a job writes in place, under a prefix of its own run: ``s3://<bucket>/<prefix>/<job
  id>/run-<n>/``. Nothing is copied: committing deletes what earlier runs of the job left
  (readers only learn of outputs from the catalog, which is written after the commit), so the
  commit of a job of a million Zarr chunks costs a few requests, and finalizing again after a
  commit finds its outputs where they were.

Each run also keeps small JSON *documents* (the plan, the scene selection) that its workers read
once per process: next to the staging area locally (``<root>/tmp/<job id>.job/run-<n>/``), under the
bucket's temporary prefix on S3 (``s3://<bucket>/<tmp prefix><job id>/run-<n>/``, expired by the
bucket's lifecycle rule).
"""

from __future__ import annotations

import json
import mimetypes
import os
import shutil
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from stacube.errors import InvalidInput, StorageError
from stacube.settings import Settings


# Retries of S3 requests (5xx, throttling, dropped connections, timeouts), explicit on both
# clients: a request that still fails fails its tile, which the job retries (runner._run_stage).
BOTO_RETRIES = {"retries": {"mode": "standard", "max_attempts": 6}, "connect_timeout": 10,
                "read_timeout": 60}
OBSTORE_RETRIES = {"max_retries": 6, "retry_timeout": timedelta(seconds=60),
                   "backoff": {"init_backoff": timedelta(milliseconds=100),
                               "max_backoff": timedelta(seconds=5), "base": 2}}

#: Files a staging area uploads at once when it publishes its work directory.
UPLOADS = 16


class Staging:
    """The staging area of one run of a job."""

    uri: str

    def zarr_store(self, name: str, *, read_only: bool = False):
        """A store ``zarr`` / ``xarray.to_zarr`` can write the cube ``name`` to."""
        raise NotImplementedError

    def workdir(self) -> Path:
        """A local directory for files produced at the end (COGs, report)."""
        raise NotImplementedError

    def publish(self) -> None:
        """Move the work directory's files into the staging area (no-op when it *is* local)."""

    def put_file(self, path: Path, relpath: str) -> None:
        """Move one local file into the staging area at ``relpath``."""
        raise NotImplementedError

    def href(self, relpath: str) -> str:
        """The address readers use for ``relpath`` once the outputs are committed."""
        raise NotImplementedError

    def public_href(self, relpath: str, base_url: str | None = None) -> str:
        """:meth:`href`, or with ``base_url`` (the URL a CDN or web server serves the output
        root at) that URL followed by the path of ``relpath`` under the output root."""
        href = self.href(relpath)
        if base_url is None:
            return href
        return base_url.rstrip("/") + "/" + href[len(self.store.href_root):].lstrip("/")

    def commit(self) -> None:
        """Make the staged outputs the job's outputs, replacing earlier ones."""
        raise NotImplementedError

    def discard(self) -> None:
        """Delete the staging area (and the run's documents)."""
        raise NotImplementedError

    def write_document(self, name: str, doc: dict) -> str:
        """Store a JSON document of the run (``plan``, ``selection``); returns its URI, which
        :func:`read_document` reads."""
        raise NotImplementedError

    def drop_documents(self) -> None:
        """Delete the run's documents (once the job completed: nothing reads them any more)."""
        raise NotImplementedError


def settle_zarr_writes(timeout: float = 30.0) -> None:
    """Wait (up to ``timeout`` seconds) for the writes zarr still runs on its I/O loop.

    zarr 3 writes a batch (an array's metadata files, a region's chunks) with ``asyncio.gather``,
    which does not cancel the rest of a batch when one write fails (a full disk): they go on
    after the error reached the caller and would recreate a staging directory being removed,
    or put an object under a prefix being deleted. Called before a staging area is discarded.
    """
    sync = sys.modules.get("zarr.core.sync")
    loop = sync.loop[0] if sync is not None else None
    if loop is None or not loop.is_running():
        return
    import asyncio

    async def drain() -> None:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=timeout)

    try:
        asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout + 1)
    except Exception:  # a loop stopping meanwhile: nothing left to wait for
        pass


class OutputStore:
    """Where a job's outputs live: ``<root>/<job id>/...``."""

    root: str
    #: what every output's :meth:`Staging.href` starts with
    href_root: str

    def staging(self, name: str, run: int = 1) -> Staging:
        raise NotImplementedError

    def check_writable(self) -> None:
        """Raise :class:`StorageError` when outputs cannot be written under the root (checked
        before a job computes anything; writes nothing)."""


class LocalStaging(Staging):
    def __init__(self, store: LocalStore, name: str, run: int = 1):
        self.store = store
        self.name = name
        self.path = store.path / "tmp" / name
        self.documents = store.path / "tmp" / f"{name}.job" / f"run-{run}"
        self.uri = str(self.path)

    def zarr_store(self, name: str, *, read_only: bool = False):
        if not read_only:
            self.path.mkdir(parents=True, exist_ok=True)
        return str(self.path / name)

    def workdir(self) -> Path:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.path}: {exc.strerror}") from exc
        return self.path

    def put_file(self, path: Path, relpath: str) -> None:
        target = self.path / relpath
        if path.resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), target)

    def href(self, relpath: str) -> str:
        return str(self.store.path / self.name / relpath)

    def write_document(self, name: str, doc: dict) -> str:
        self.documents.mkdir(parents=True, exist_ok=True)
        path = self.documents / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, default=str))
        tmp.replace(path)
        return str(path)

    def drop_documents(self) -> None:
        shutil.rmtree(self.documents.parent, ignore_errors=True)

    def commit(self) -> None:
        final = self.store.path / self.name
        old = None
        try:
            if final.exists():
                old = self.store.path / "tmp" / f"{self.name}-replaced-{uuid.uuid4().hex[:8]}"
                final.rename(old)
            self.path.rename(final)
        except OSError as exc:
            if old is not None and not final.exists():
                old.rename(final)
            raise StorageError(f"cannot commit outputs to {final}: {exc.strerror}") from exc
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        settle_zarr_writes()
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.rmtree(self.documents.parent, ignore_errors=True)


class LocalStore(OutputStore):
    """Outputs in a local directory; staging in ``<root>/tmp`` (same filesystem: renames)."""

    def __init__(self, root: Path):
        self.path = root.resolve()
        self.root = self.path.as_uri()
        self.href_root = str(self.path)

    def staging(self, name: str, run: int = 1) -> LocalStaging:
        return LocalStaging(self, name, run)

    def check_writable(self) -> None:
        """The root must be a directory this process can create files in: it is created (the
        job would create it) and a temporary file is made and removed there."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path):
                pass
        except OSError as exc:
            where = exc.filename or self.path
            raise StorageError(f"cannot write outputs to {self.path}: {exc.strerror} ({where})") from exc


class S3Staging(Staging):
    """A run's outputs, written in place under ``<prefix>/<job>/run-<n>/`` (see the module
    docstring); its documents under ``<tmp prefix><job>/run-<n>/``."""

    def __init__(self, store: S3Store, name: str, run: int):
        self.store = store
        self.name = name
        self.run = run
        self.prefix = store.key(name, f"run-{run}")
        self.documents = "/".join(p for p in (store.tmp_prefix, name, f"run-{run}") if p)
        self.uri = f"s3://{store.bucket}/{self.prefix}"
        self._workdir: Path | None = None

    def zarr_store(self, name: str, *, read_only: bool = False):
        return _s3_zarr_store(self.store.bucket, f"{self.prefix}/{name}", self.store.settings,
                              read_only=read_only)

    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"stacube-{self.name}-"))
        return self._workdir

    def put_file(self, path: Path, relpath: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        kind = mimetypes.guess_type(relpath)[0]  # served as is by a bucket website or CDN (tiles, JSON)
        try:
            self.store.client.upload_file(str(path), self.store.bucket, f"{self.prefix}/{relpath}",
                                          ExtraArgs={"ContentType": kind} if kind else None)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot write to {self.uri}/{relpath}: {exc}") from exc

    def publish(self) -> None:
        """Upload the work directory's files, :data:`UPLOADS` at once (a tile pyramid is
        thousands of small files)."""
        if self._workdir is None:
            return
        try:
            files = sorted(p for p in self._workdir.rglob("*") if p.is_file())
            with ThreadPoolExecutor(UPLOADS) as pool:
                list(pool.map(lambda f: self.put_file(f, f.relative_to(self._workdir).as_posix()), files))
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def href(self, relpath: str) -> str:
        return f"s3://{self.store.bucket}/{self.prefix}/{relpath}"

    def write_document(self, name: str, doc: dict) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{self.documents}/{name}.json"
        try:
            self.store.client.put_object(Bucket=self.store.bucket, Key=key,
                                         Body=json.dumps(doc, default=str).encode(),
                                         ContentType="application/json")
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot write s3://{self.store.bucket}/{key}: {exc}") from exc
        return f"s3://{self.store.bucket}/{key}"

    def drop_documents(self) -> None:
        self.store.delete(self.store.list(self.documents))

    def commit(self) -> None:
        """Delete what earlier runs of the job left beside this run (a listing by run folder:
        this run's own objects are never listed); safe to repeat."""
        job_prefix = self.store.key(self.name) + "/"
        mine = self.prefix + "/"
        stale: list[str] = []
        for page in self.store.pages(job_prefix, delimiter="/"):
            stale.extend(o["Key"] for o in page.get("Contents", []))
            for common in page.get("CommonPrefixes", []):
                if common["Prefix"] != mine:
                    stale.extend(self.store.list(common["Prefix"]))
        self.store.delete(stale)

    def discard(self) -> None:
        settle_zarr_writes()
        self.store.delete(self.store.list(self.prefix))
        self.store.delete(self.store.list(self.documents))
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


class S3Store(OutputStore):
    """Outputs in ``s3://bucket/prefix``, each run of a job in a folder of its own."""

    def __init__(self, bucket: str, prefix: str, settings: Settings):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.tmp_prefix = settings.tmp_prefix.strip("/")
        self.root = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.href_root = self.root
        self.settings = settings
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = s3_client(self.settings)
        return self._client

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    def pages(self, prefix: str, *, delimiter: str | None = None):
        """``list_objects_v2`` pages under ``prefix``.

        Raises:
            StorageError: the listing failed.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            yield from self.client.get_paginator("list_objects_v2").paginate(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot list s3://{self.bucket}/{prefix}: {exc}") from exc

    def list(self, prefix: str) -> list[str]:
        return [o["Key"] for page in self.pages(prefix.rstrip("/") + "/") for o in page.get("Contents", [])]

    def delete(self, keys: list[str]) -> None:
        """Delete objects, a thousand per request.

        Raises:
            StorageError: a request or an object failed.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            try:
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except (BotoCoreError, ClientError) as exc:
                raise StorageError(f"cannot delete from s3://{self.bucket}: {exc}") from exc
            if answer.get("Errors"):
                err = answer["Errors"][0]
                raise StorageError(f"cannot delete s3://{self.bucket}/{err.get('Key')}: {err.get('Message')}")

    def staging(self, name: str, run: int = 1) -> S3Staging:
        return S3Staging(self, name, run)

    def check_writable(self) -> None:
        """The bucket must exist and answer (one ``HeadBucket`` request)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            reason = {"404": "no such bucket", "NoSuchBucket": "no such bucket",
                      "403": "access denied"}.get(code, code or str(exc))
            raise StorageError(f"cannot write outputs to s3://{self.bucket}: {reason}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot write outputs to s3://{self.bucket}: {exc}") from exc


_ZARR_STORES: dict[tuple, object] = {}


def _s3_zarr_store(bucket: str, prefix: str, settings: Settings, *, read_only: bool = False):
    """A zarr store (obstore) over ``s3://bucket/prefix``, honouring ``STACUBE_S3_ENDPOINT``
    (one per process and prefix: its client and connections are reused by every tile)."""
    key = (bucket, prefix.strip("/"), settings.s3_endpoint, read_only)
    if key not in _ZARR_STORES:
        if len(_ZARR_STORES) >= 32:
            _ZARR_STORES.clear()
        _ZARR_STORES[key] = _new_s3_zarr_store(bucket, prefix, settings, read_only=read_only)
    return _ZARR_STORES[key]


def _new_s3_zarr_store(bucket: str, prefix: str, settings: Settings, *, read_only: bool = False):
    from obstore.store import S3Store as ObS3Store
    from zarr.storage import ObjectStore

    kwargs: dict = {}
    if settings.s3_endpoint:
        kwargs["endpoint"] = settings.s3_endpoint
        kwargs["client_options"] = {"allow_http": settings.s3_endpoint.startswith("http://")}
        kwargs["virtual_hosted_style_request"] = False
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return ObjectStore(ObS3Store(bucket, prefix=prefix.strip("/"), retry_config=OBSTORE_RETRIES, **kwargs),
                       read_only=read_only)


def zarr_store_at(uri: str, settings: Settings, *, read_only: bool = False):
    """A zarr store for a Zarr hierarchy at ``uri`` written in place (no staging): a local path
    (``file://`` or plain) or ``s3://bucket/prefix``.

    Raises:
        InvalidInput: an unsupported scheme.
    """
    where = location(uri, repr(uri))
    if isinstance(where, Path):
        return str(where)
    return _s3_zarr_store(*where, settings, read_only=read_only)


def location(uri: str, what: str) -> Path | tuple[str, str]:
    """Where a storage URI points: the local path of a path or ``file://`` URI, or the
    ``(bucket, prefix)`` of an ``s3://`` one.

    Raises:
        InvalidInput: an ``s3://`` without a bucket or another scheme (the message starts
            with ``what``).
    """
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InvalidInput(f"{what}: no bucket")
        return parsed.netloc, parsed.path
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
    raise InvalidInput(f"{what}: unsupported scheme {parsed.scheme!r} (use a path, file:// or s3://)")


def read_document(uri: str, settings: Settings) -> dict:
    """A JSON document written by :meth:`Staging.write_document` (a path or ``s3://``).

    Raises:
        StorageError: it cannot be read.
    """
    parsed = urlparse(uri)
    try:
        if parsed.scheme == "s3":
            body = s3_client(settings).get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()
        else:
            body = Path(parsed.path if parsed.scheme == "file" else uri).read_bytes()
        return json.loads(body)
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read {uri}: {exc}") from exc
    except Exception as exc:
        failure = storage_error(exc)
        if failure is None:
            raise
        raise StorageError(f"cannot read {uri}: {failure.message}") from exc


def storage_error(exc: BaseException) -> StorageError | None:
    """A one-line StorageError for an object-store or filesystem failure, else None."""
    import errno

    if isinstance(exc, StorageError):
        return exc
    kind = None
    if isinstance(exc, OSError) and exc.errno is not None:
        kind = {errno.ENOSPC: "no space left on the output device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "the output location is read-only",
                errno.EACCES: "permission denied"}.get(exc.errno)
        if kind:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            return StorageError(f"cannot write outputs: {kind}{where}")
    module = type(exc).__module__ or ""
    if module.startswith(("obstore", "botocore", "boto3", "s3transfer")):
        text = " ".join(str(exc).split("Debug source:")[0].split())
        return StorageError(f"object storage request failed: {text[:400]}")
    return None


def s3_client(settings: Settings, retries: dict | None = None):
    """A boto3 S3 client honouring ``STACUBE_S3_ENDPOINT`` (S3-compatible servers); ``retries``:
    botocore ``Config`` arguments instead of :data:`BOTO_RETRIES`."""
    import boto3
    from botocore.config import Config

    kwargs = {}
    if settings.s3_endpoint:
        kwargs["endpoint_url"] = settings.s3_endpoint
    return boto3.client("s3", config=Config(**(retries or BOTO_RETRIES)), **kwargs)


def open_store(uri: str, settings: Settings) -> OutputStore:
    """The store for an output root URI (``file://``, a path, or ``s3://bucket/prefix``).

    Raises:
        InvalidInput: an unsupported scheme.
    """
    where = location(uri, f"output {uri!r}")
    return LocalStore(where) if isinstance(where, Path) else S3Store(*where, settings)


def configure_gdal(settings: Settings) -> None:
    """Point GDAL's /vsis3/ at ``STACUBE_S3_ENDPOINT`` when one is set (S3-compatible servers)."""
    if not settings.s3_endpoint:
        return
    parsed = urlparse(settings.s3_endpoint)
    os.environ.setdefault("AWS_S3_ENDPOINT", parsed.netloc)
    os.environ.setdefault("AWS_HTTPS", "YES" if parsed.scheme == "https" else "NO")
    os.environ.setdefault("AWS_VIRTUAL_HOSTING", "FALSE")
