"""Local and S3 output stores with staged, all-or-nothing commits."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlparse

from stacube.errors import InvalidInput, StorageError
from stacube.settings import Settings


class OutputStore:
    """Where a job's outputs live: ``<root>/<name>/...``."""

    root: str

    def stage(self, name: str) -> Path:
        """A fresh local directory to produce ``<name>`` in."""
        raise NotImplementedError

    def commit(self, staging: Path, name: str) -> None:
        """Make ``staging``'s content visible as ``<root>/<name>``, replacing what was there."""
        raise NotImplementedError

    def discard(self, staging: Path) -> None:
        """Remove a staging directory after a failure."""
        shutil.rmtree(staging, ignore_errors=True)

    def href(self, name: str, relpath: str) -> str:
        """The address readers use for a committed file."""
        raise NotImplementedError

    def exists(self, name: str, relpath: str) -> bool:
        raise NotImplementedError


class LocalStore(OutputStore):
    """Outputs in a local directory; staging happens in ``<root>/tmp`` (same filesystem)."""

    def __init__(self, root: Path):
        self.path = root.resolve()
        self.root = self.path.as_uri()

    def stage(self, name: str) -> Path:
        tmp = self.path / "tmp"
        try:
            tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create output directory {tmp}: {exc.strerror}") from exc
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp))

    def commit(self, staging: Path, name: str) -> None:
        final = self.path / name
        old = None
        try:
            if final.exists():
                old = self.path / "tmp" / f"{name}-replaced-{uuid.uuid4().hex[:8]}"
                final.rename(old)
            staging.rename(final)
        except OSError as exc:
            if old is not None and not final.exists():
                old.rename(final)
            raise StorageError(f"cannot commit outputs to {final}: {exc.strerror}") from exc
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def href(self, name: str, relpath: str) -> str:
        return str(self.path / name / relpath)

    def exists(self, name: str, relpath: str) -> bool:
        return (self.path / name / relpath).exists()


class S3Store(OutputStore):
    """Outputs in ``s3://bucket/prefix``; staged locally, uploaded under the temporary prefix,
    then copied to the final keys (objects appear only after everything was produced)."""

    def __init__(self, bucket: str, prefix: str, settings: Settings):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.tmp_prefix = settings.tmp_prefix.strip("/")
        self.root = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = s3_client(settings)

    def _key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    def stage(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"stacube-{name}-"))

    def commit(self, staging: Path, name: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        nonce = uuid.uuid4().hex[:8]
        tmp_root = "/".join(p for p in (self.tmp_prefix, f"{name}-{nonce}") if p)
        files = [p for p in staging.rglob("*") if p.is_file()]
        try:
            for f in files:
                rel = f.relative_to(staging).as_posix()
                self._client.upload_file(str(f), self.bucket, f"{tmp_root}/{rel}")
            stale = set(self._list(self._key(name)))
            for f in files:
                rel = f.relative_to(staging).as_posix()
                final = self._key(name, rel)
                self._client.copy_object(Bucket=self.bucket, Key=final,
                                         CopySource={"Bucket": self.bucket, "Key": f"{tmp_root}/{rel}"})
                stale.discard(final)
            for key in stale:
                self._client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot write outputs to {self.root}/{name}: {exc}") from exc
        finally:
            for key in self._list(tmp_root):
                self._client.delete_object(Bucket=self.bucket, Key=key)
            shutil.rmtree(staging, ignore_errors=True)

    def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/"):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    def href(self, name: str, relpath: str) -> str:
        return f"s3://{self.bucket}/{self._key(name, relpath)}"

    def exists(self, name: str, relpath: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(name, relpath))
            return True
        except ClientError:
            return False


def s3_client(settings: Settings):
    """A boto3 S3 client honouring ``STACUBE_S3_ENDPOINT`` (S3-compatible servers)."""
    import boto3

    kwargs = {}
    if settings.s3_endpoint:
        kwargs["endpoint_url"] = settings.s3_endpoint
    return boto3.client("s3", **kwargs)


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
