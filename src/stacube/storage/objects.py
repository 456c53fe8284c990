"""Local and S3 output stores with staged, all-or-nothing commits.

A job writes into a *staging* area named after the job id, so a resumed job finds the work of the
interrupted run: ``<root>/tmp/<job id>/`` locally, ``s3://<bucket>/<tmp prefix><job id>/`` on S3
(the bucket's lifecycle rule expires abandoned staging objects). :meth:`Staging.commit` then makes
the outputs visible under ``<root>/<job id>/`` at once: a directory rename locally; on S3 a copy of
each staged object to its final key (readers only learn of the outputs from the catalog, which is
written after the commit).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
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


class Staging:
    """The staging area of one job."""

    uri: str

    def zarr_store(self, name: str, *, read_only: bool = False):
        """A store ``zarr`` / ``xarray.to_zarr`` can write the cube ``name`` to."""
        raise NotImplementedError

    def workdir(self) -> Path:
        """A local directory for files produced at the end (COGs, report)."""
        raise NotImplementedError

    def publish(self) -> None:
        """Move the work directory's files into the staging area (no-op when it *is* local)."""

    def commit(self) -> None:
        """Make the staged outputs the job's outputs, replacing earlier ones."""
        raise NotImplementedError

    def discard(self) -> None:
        """Delete the staging area."""
        raise NotImplementedError


class OutputStore:
    """Where a job's outputs live: ``<root>/<job id>/...``."""

    root: str

    def staging(self, name: str) -> Staging:
        raise NotImplementedError

    def href(self, name: str, relpath: str) -> str:
        """The address readers use for a committed file."""
        raise NotImplementedError

    def check_writable(self) -> None:
        """Raise :class:`StorageError` when outputs cannot be written under the root (checked
        before a job computes anything; writes nothing)."""


class LocalStaging(Staging):
    def __init__(self, store: LocalStore, name: str):
        self.store = store
        self.name = name
        self.path = store.path / "tmp" / name
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
        shutil.rmtree(self.path, ignore_errors=True)


class LocalStore(OutputStore):
    """Outputs in a local directory; staging in ``<root>/tmp`` (same filesystem: renames)."""

    def __init__(self, root: Path):
        self.path = root.resolve()
        self.root = self.path.as_uri()

    def staging(self, name: str) -> LocalStaging:
        return LocalStaging(self, name)

    def href(self, name: str, relpath: str) -> str:
        return str(self.path / name / relpath)

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
    def __init__(self, store: S3Store, name: str):
        self.store = store
        self.name = name
        self.prefix = "/".join(p for p in (store.tmp_prefix, name) if p)
        self.uri = f"s3://{store.bucket}/{self.prefix}"
        self._workdir: Path | None = None

    def zarr_store(self, name: str, *, read_only: bool = False):
        return _s3_zarr_store(self.store.bucket, f"{self.prefix}/{name}", self.store.settings,
                              read_only=read_only)

    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"stacube-{self.name}-"))
        return self._workdir

    def publish(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._workdir is None:
            return
        try:
            for f in sorted(p for p in self._workdir.rglob("*") if p.is_file()):
                rel = f.relative_to(self._workdir).as_posix()
                self.store.client.upload_file(str(f), self.store.bucket, f"{self.prefix}/{rel}")
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot write to {self.uri}: {exc}") from exc
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def commit(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        final_prefix = self.store.key(self.name)
        client, bucket = self.store.client, self.store.bucket
        try:
            staged = self.store.list(self.prefix)
            stale = set(self.store.list(final_prefix))
            for key in staged:
                rel = key[len(self.prefix) + 1:]
                final = f"{final_prefix}/{rel}"
                client.copy_object(Bucket=bucket, Key=final, CopySource={"Bucket": bucket, "Key": key})
                stale.discard(final)
            for key in stale:
                client.delete_object(Bucket=bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot commit outputs to {self.store.root}/{self.name}: {exc}") from exc
        self.discard()

    def discard(self) -> None:
        for key in self.store.list(self.prefix):
            self.store.client.delete_object(Bucket=self.store.bucket, Key=key)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


class S3Store(OutputStore):
    """Outputs in ``s3://bucket/prefix``, staged under the bucket's temporary prefix."""

    def __init__(self, bucket: str, prefix: str, settings: Settings):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.tmp_prefix = settings.tmp_prefix.strip("/")
        self.root = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.settings = settings
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = s3_client(self.settings)
        return self._client

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    def list(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/"):
                keys.extend(o["Key"] for o in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot list s3://{self.bucket}/{prefix}: {exc}") from exc
        return keys

    def staging(self, name: str) -> S3Staging:
        return S3Staging(self, name)

    def href(self, name: str, relpath: str) -> str:
        return f"s3://{self.bucket}/{self.key(name, relpath)}"

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


def _s3_zarr_store(bucket: str, prefix: str, settings: Settings, *, read_only: bool = False):
    """A zarr store (obstore) over ``s3://bucket/prefix``, honouring ``STACUBE_S3_ENDPOINT``."""
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
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InvalidInput(f"{uri!r}: no bucket")
        return _s3_zarr_store(parsed.netloc, parsed.path, settings, read_only=read_only)
    if parsed.scheme in ("", "file"):
        return str(Path(parsed.path if parsed.scheme == "file" else uri).expanduser())
    raise InvalidInput(f"{uri!r}: unsupported scheme {parsed.scheme!r} (use a path, file:// or s3://)")


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


def s3_client(settings: Settings):
    """A boto3 S3 client honouring ``STACUBE_S3_ENDPOINT`` (S3-compatible servers)."""
    import boto3
    from botocore.config import Config

    kwargs = {}
    if settings.s3_endpoint:
        kwargs["endpoint_url"] = settings.s3_endpoint
    return boto3.client("s3", config=Config(**BOTO_RETRIES), **kwargs)


def open_store(uri: str, settings: Settings) -> OutputStore:
    """The store for an output root URI (``file://``, a path, or ``s3://bucket/prefix``).

    Raises:
        InvalidInput: an unsupported scheme.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InvalidInput(f"output {uri!r}: no bucket")
        return S3Store(parsed.netloc, parsed.path, settings)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
        return LocalStore(path)
    raise InvalidInput(f"output {uri!r}: unsupported scheme {parsed.scheme!r} (use a path, file:// or s3://)")


def configure_gdal(settings: Settings) -> None:
    """Point GDAL's /vsis3/ at ``STACUBE_S3_ENDPOINT`` when one is set (S3-compatible servers)."""
    if not settings.s3_endpoint:
        return
    parsed = urlparse(settings.s3_endpoint)
    os.environ.setdefault("AWS_S3_ENDPOINT", parsed.netloc)
    os.environ.setdefault("AWS_HTTPS", "YES" if parsed.scheme == "https" else "NO")
    os.environ.setdefault("AWS_VIRTUAL_HOSTING", "FALSE")
