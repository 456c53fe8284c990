"""stac-api-validator (stac-utils) against the running STAC API, offline.

Classes: core, collections, features, item-search, filter, item-search#sort, item-search#fields,
item-search#query, transaction. The tool's JSON schema fetches are answered from local copies
(``offline.py``); nothing leaves loopback. Five classes must report no error at all; the errors
the tool reports for fields, query and transaction must each be one of the known deviations
below, explained in ``docs/conformance.md`` (the tool's own defects, or answers the STAC API
specification allows and the tool does not), and every semantic check around them must pass.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from live_server import API_KEY, TRANSACTION_COLLECTION

HERE = Path(__file__).resolve().parent
CLASSES = ["core", "collections", "features", "item-search", "filter", "item-search#sort",
           "item-search#fields", "item-search#query", "transaction"]
CLEAN = ("Core", "Collections", "Features", "Item Search", "Item Search - Filter Ext",
         "Item Search - Sort Ext")
# context -> patterns of the errors explained in docs/conformance.md (each must be matched)
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


@pytest.fixture(scope="module")
def validation(conformance_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("stac-api-validator")
    config = {
        "root_url": f"{conformance_server.base}/stac/",
        "ccs_to_validate": CLASSES,
        # 21 Sentinel-2 L2A scenes: sentinel-2a and -2b, cloud cover 0 to 100
        "collection": "sentinel-2-l2a-worldcereal-sample",
        "geometry": json.dumps({"type": "Polygon", "coordinates": [
            [[34.4, -3.2], [34.5, -3.2], [34.5, -3.1], [34.4, -3.1], [34.4, -3.2]]]}),
        "auth_bearer_token": None, "auth_query_parameter": None,
        "fields_nested_property": "properties.platform",
        "validate_pagination": True,
        "query_config": {
            "query_comparison_field": "eo:cloud_cover", "query_eq_value": 0, "query_neq_value": 0,
            "query_lt_value": 10, "query_lte_value": 10, "query_gt_value": 10, "query_gte_value": 10,
            "query_substring_field": "platform", "query_starts_with_value": "sent",
            "query_ends_with_value": "2a", "query_contains_value": "inel-2",
            "query_in_field": "platform", "query_in_values": "sentinel-2a,sentinel-2b",
        },
        "transaction_collection": TRANSACTION_COLLECTION,
        "headers": {"X-API-Key": API_KEY},
    }
    (folder / "config.json").write_text(json.dumps(config))
    proc = subprocess.run([sys.executable, str(HERE / "run_stac_api_validator.py"), str(folder / "config.json"),
                           str(folder / "result.json")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((folder / "result.json").read_text())
    assert result["crashed"] is None, result["crashed"]
    return result


def test_nothing_left_loopback_and_schemas_came_from_local_copies(validation):
    offline = validation["offline"]
    assert offline["refused"] == []
    served = offline["served"]
    assert "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json" in served
    assert "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json" in served
    assert any(url.startswith("https://geojson.org/schema/") for url in served)


@pytest.mark.parametrize("context", CLEAN)
def test_conformance_class_passes(validation, context):
    errors = [e for _, e in validation["errors"] if context_of(e) == context]
    assert errors == []


def test_every_other_error_is_a_documented_deviation(validation):
    unexplained = []
    for _, error in validation["errors"]:
        context = context_of(error)
        if context in CLEAN:
            continue  # reported by the test above
        if not any(re.search(p, error) for p in KNOWN.get(context, [])):
            unexplained.append(error[:500])
    assert unexplained == []
    for context, patterns in KNOWN.items():  # and each deviation is still there (keep the doc true)
        for pattern in patterns:
            assert any(re.search(pattern, e) for _, e in validation["errors"]), (context, pattern)


def test_transactions_round_trip_and_leave_the_collection_valid(validation, conformance_server):
    """The tool created, read, replaced, patched and deleted an item; its value checks passed."""
    import httpx

    transaction = [e for _, e in validation["errors"] if context_of(e) == "Features - Transaction Ext"]
    assert not [e for e in transaction if "did not match" in e or "was not" in e]
    base = f"{conformance_server.base}/stac/collections/{TRANSACTION_COLLECTION}"
    assert httpx.get(f"{base}/items/S2A_47XNF_20230423_0_L2A").status_code == 404
    extent = httpx.get(base).json()["extent"]  # emptied again: still a valid extent
    assert isinstance(extent["spatial"]["bbox"], list) and extent["temporal"]["interval"]
