"""stac-api-validator, every class stacube claims, on a public catalogue's collection registered
without ``item_assets`` (its item_assets, summaries and queryables derived from the items), with
the Query extension's values given as text as the tool's command line gives them."""

from __future__ import annotations

import json

import pytest

from interop_testing import PUBLIC, PUBLIC_DATA
from run_stac_api_validator import CLASSES, context_of, run, unexplained


@pytest.fixture(scope="module")
def validation(stac_url, tmp_path_factory):
    config = {
        "root_url": stac_url, "ccs_to_validate": CLASSES, "collection": PUBLIC,
        # tile 13TDE (Colorado): ten of the sixteen items
        "geometry": json.dumps({"type": "Polygon", "coordinates": [
            [[-105.9, 40.0], [-105.5, 40.0], [-105.5, 40.3], [-105.9, 40.3], [-105.9, 40.0]]]}),
        "auth_bearer_token": None, "auth_query_parameter": None,
        "fields_nested_property": "properties.platform", "validate_pagination": True,
        "query_config": {
            "query_comparison_field": "eo:cloud_cover", "query_eq_value": "0.044906",
            "query_neq_value": "0.044906", "query_lt_value": "20", "query_lte_value": "22.001417",
            "query_gt_value": "20", "query_gte_value": "22.001417",
            "query_substring_field": "platform", "query_starts_with_value": "sent",
            "query_ends_with_value": "2a", "query_contains_value": "inel-2",
            "query_in_field": "platform", "query_in_values": "sentinel-2a,sentinel-2b",
        },
        "transaction_collection": None, "headers": {},
        # the assets and links of a public catalogue's items are on the internet: not opened
        "open_assets_urls": False,
    }
    return run(config, tmp_path_factory.mktemp("validator-public"))


@pytest.mark.parametrize("context", ["Core", "Collections", "Features", "Item Search",
                                     "Item Search - Filter Ext", "Features - Filter Ext",
                                     "Item Search - Sort Ext", "Item Search - Query Ext"])
def test_class_has_no_error_but_the_tools_own(validation, context):
    assert [e for e in unexplained(validation["errors"]) if context_of(e) == context] == []


def test_no_error_outside_the_documented_deviations(validation):
    assert unexplained(validation["errors"]) == []


def test_only_the_public_documents_links_were_left_unopened(validation):
    """The tool's linter follows the documents' own links (DOI, licence, thumbnails of the
    original catalogue): those stay unopened offline; nothing else was refused."""
    public = "".join(p.read_text() for p in PUBLIC_DATA.iterdir())
    refused = validation["offline"]["refused"]
    assert [u for u in refused if u not in public and not u.startswith("dns://127.0.0.1")] == []
