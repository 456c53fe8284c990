"""``stac-api-validator`` with its schema fetches answered from local copies (see ``offline.py``).

Usage: ``python run_stac_api_validator.py CONFIG.json RESULT.json``

``CONFIG.json`` holds the keyword arguments of ``stac_api_validator.validations.validate_api``
(the function behind the tool's command line), with ``query_config`` as a mapping: calling it
directly keeps the Query extension's values typed (the command line passes every value as a
string, so ``{"eq": "0"}`` never matches a numeric property). ``RESULT.json`` receives the
warnings, the errors, and what the offline hook served, stubbed and refused.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import offline  # noqa: E402


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    record = offline.install()
    import logging

    logging.basicConfig(stream=sys.stdout, level=logging.WARNING)
    from stac_api_validator.validations import QueryConfig, validate_api

    config["query_config"] = QueryConfig(**config["query_config"])
    result: dict = {"crashed": None}
    try:
        warnings, errors = validate_api(**config)
        result["warnings"] = [list(w) for w in warnings.errors]
        result["errors"] = [list(e) for e in errors.errors]
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        result["crashed"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        result["warnings"], result["errors"] = [], []
    result["offline"] = record.as_dict()
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
