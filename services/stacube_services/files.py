"""Job outputs on local disk, served for download at ``/files`` by ``stacube up``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from stacube.settings import Settings


def local_output_dir(settings: Settings) -> Path | None:
    """The local directory of job outputs, or None when outputs go to object storage."""
    parsed = urlparse(settings.output_root)
    if parsed.scheme not in ("", "file"):
        return None
    return Path(parsed.path if parsed.scheme else settings.output_root)
