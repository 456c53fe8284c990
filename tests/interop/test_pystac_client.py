"""pystac-client against ``stacube up``: conformance, search, paging, sort, filter, query,
``matched()`` and queryables, on the samples and on a public collection registered without
``item_assets``."""

from __future__ import annotations

import warnings

import pytest
from pystac_client import Client, ConformanceClasses
from pystac_client.warnings import DoesNotConformTo

from interop_testing import PUBLIC, S2

pytestmark = [pytest.mark.usefixtures("interop_server"),
              # pystac reads the public items' storage extension v1 and cannot migrate its fields
              pytest.mark.filterwarnings("ignore:Could not parse bucket:UserWarning")]


@pytest.fixture(scope="module")
def client(stac_url):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DoesNotConformTo)  # every class used below is recognised
        yield Client.open(stac_url)


@pytest.mark.parametrize("cls", ["CORE", "COLLECTIONS", "FEATURES", "ITEM_SEARCH", "SORT", "FIELDS",
                                 "QUERY", "FILTER"])
def test_conformance_classes_are_recognised(client, cls):
    assert client.conforms_to(ConformanceClasses.get_by_name(cls))


def test_sort_warns_nothing_and_sorts_numbers_as_numbers(client, public_items):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DoesNotConformTo)
        search = client.search(collections=[PUBLIC], sortby="-eo:cloud_cover", limit=5)
        got = [i.properties["eo:cloud_cover"] for i in search.items()]
    assert got == sorted((i["properties"]["eo:cloud_cover"] for i in public_items), reverse=True)
    assert len(got) == 16


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_paging_and_matched(client, method):
    search = client.search(collections=[PUBLIC], limit=5, method=method)
    assert search.matched() == 16
    pages = list(search.pages())
    assert [len(p) for p in pages] == [5, 5, 5, 1]
    assert len({i.id for p in pages for i in p}) == 16


def test_matched_on_the_samples(client):
    assert client.search(collections=[S2]).matched() == 5
    assert client.search(collections=["landsat-8-c1-l1tp-gdalcubes-sample"], filter="eo:cloud_cover < 10",
                         filter_lang="cql2-text").matched() >= 1


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("lang, expr", [
    ("cql2-text", "eo:cloud_cover < 20"),
    ("cql2-json", {"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]}),
])
def test_filter_compares_numbers(client, public_items, method, lang, expr):
    search = client.search(collections=[PUBLIC], filter=expr, filter_lang=lang, method=method)
    got = sorted(i.id for i in search.items())
    assert got == sorted(i["id"] for i in public_items if i["properties"]["eo:cloud_cover"] < 20)
    assert got and search.matched() == len(got)


@pytest.mark.parametrize("operand", [20, "20"])
def test_query_compares_numbers_even_given_as_text(client, public_items, operand):
    search = client.search(collections=[PUBLIC], query={"eo:cloud_cover": {"gt": operand}})
    got = sorted(i.id for i in search.items())
    assert got == sorted(i["id"] for i in public_items if i["properties"]["eo:cloud_cover"] > 20)


def test_queryables_list_the_properties_with_json_types(client):
    queryables = client.get_collection(PUBLIC).get_queryables()["properties"]
    assert queryables["eo:cloud_cover"]["type"] == "number"
    assert queryables["platform"]["type"] == "string"
    assert queryables["instruments"]["type"] == "array"
    assert queryables["s2:processing_baseline"]["type"] == "string"
    assert queryables["created"] == {"type": "string", "format": "date-time"}
    samples = client.get_merged_queryables([S2])["properties"]
    assert samples["eo:cloud_cover"]["type"] == "number"


def test_the_public_collection_is_described_by_its_items(client):
    collection = client.get_collection(PUBLIC)
    assets = collection.extra_fields["item_assets"]
    assert assets["red"]["eo:bands"][0]["common_name"] == "red"
    assert assets["red"]["raster:bands"][0]["scale"] == 0.0001
    assert "href" not in assets["red"] and "proj:shape" not in assets["red"]
    assert set(collection.summaries.get_list("instruments") or []) == {"msi"}
    assert collection.extra_fields["renders"]["true-color"]["assets"] == ["red", "green", "blue"]
