"""Names shared by the interoperability tests and their fixtures."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PUBLIC_DATA = HERE.parent / "data" / "stac"
PUBLIC = "sentinel-2-c1-l2a"  # the public collection (16 items, no item_assets declared)
S2 = "sentinel-2-l1c-eolearn-sample"
