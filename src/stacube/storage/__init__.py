"""Object storage for outputs: local directories and S3 (or S3-compatible) buckets.

Outputs are produced in a staging directory and become visible only when complete:
:meth:`OutputStore.commit` moves them under their final prefix (a directory rename locally; on
S3 an upload to the temporary prefix followed by copies to the final keys). Addresses are URIs:
``file:///abs/path`` (or a plain path) and ``s3://bucket/prefix``.
"""

from stacube.storage.objects import LocalStore, OutputStore, S3Store, Staging, open_store

__all__ = ["LocalStore", "OutputStore", "S3Store", "Staging", "open_store"]
