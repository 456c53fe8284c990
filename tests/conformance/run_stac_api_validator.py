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
import re
import subprocess
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import offline  # noqa: E402

#: every conformance class stac-api-validator checks that stacube claims (it claims neither
#: ``browseable`` nor ``children``: the catalog is searched, not crawled)
CLASSES = ["core", "collections", "features", "features#fields", "features#sort", "features#query",
           "features#filter", "item-search", "item-search#fields", "item-search#sort",
           "item-search#query", "item-search#filter"]
#: context -> patterns of the errors explained in docs/conformance.md (the tool's own defects,
#: or answers the specification allows and the tool does not)
KNOWN = {
    "Features - Transaction Ext": [
        # DELETE of a missing item before the create: the specification answers 404
        r"DELETE \S+/items/S2A_47XNF_20230423_0_L2A .* unexpected status code 404 instead of 204",
        # PUT / PATCH / DELETE answer 200 with the document (allowed: 200, 202 or 204)
        r"PUT \S+/items/S2A_47XNF_20230423_0_L2A .* unexpected status code 200 instead of 204",
        r"PATCH \S+/items/S2A_47XNF_20230423_0_L2A .* unexpected status code 200 instead of 204",
        r"DELETE \S+/items/S2A_47XNF_20230423_0_L2A .* unexpected status code 200 instead of 204",
    ],
    "Item Search - Fields Ext": [
        # the tool demands the same field present (rule 3) and absent (rule 4) for one request
        r"POST \{'fields': \{'exclude': \['geometry'\], 'include': \[\]\}\} response contained "
        r"'properties.platform', but should have been excluded",
        r"POST \{'fields': \{'exclude': \['geometry'\], 'include': None\}\} response contained "
        r"'properties.platform', but should have been excluded",
        # a five-field minimum for a request that asks for one property
        r"POST \{'fields': \{'exclude': \['properties'\], 'include': \['properties.platform'\]\}\} "
        r"response contained fewer than 5 fields",
    ],
    "Item Search - Query Ext": [
        # the tool compares the characters of a string property with the "in" values
        r"GET search with Query '\{\"platform\": \{\"in\": \[\"sentinel-2a\", \"sentinel-2b\"\]\}\}' "
        r"had non-matching results",
        r"POST search with Query '\{\"platform\": \{\"in\": \[\"sentinel-2a\", \"sentinel-2b\"\]\}\}' "
        r"had non-matching results",
    ],
}


def context_of(message: str) -> str:
    match = re.match(r"\[([^\]]+)\]", message)
    return match.group(1) if match else ""


def unexplained(errors: list) -> list[str]:
    """The errors that are none of :data:`KNOWN`."""
    out = []
    for _, error in errors:
        if not any(re.search(p, error) for p in KNOWN.get(context_of(error), [])):
            out.append(error[:500])
    return out


def run(config: dict, folder: Path) -> dict:
    """Run the validator (in a process of its own, offline) with ``config``; its result."""
    (folder / "config.json").write_text(json.dumps(config))
    proc = subprocess.run([sys.executable, str(HERE / "run_stac_api_validator.py"), str(folder / "config.json"),
                           str(folder / "result.json")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((folder / "result.json").read_text())
    assert result["crashed"] is None, result["crashed"]
    return result


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
