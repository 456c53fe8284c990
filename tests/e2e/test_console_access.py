"""Signing in to the console, and what each workspace sees and renders there.

A server of its own (a database of its own, so the keys it holds do not turn access control on
for the other console tests) with OIDC configured against a local test issuer
(:mod:`oidc_issuer`): two workspaces with API keys made through the library, a private
collection of t-alpha (a copy of the Slovenia scenes). Each test drives the console in one
browser context per user (their own sessionStorage). A job of t-alpha: its page, signed in,
shows the filled preview and downloads a region as NetCDF (fetched with the key, from blob URLs),
which the same URLs refuse (404) without it.
"""

from __future__ import annotations

import io
import json
import re
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from console_helpers import CHROMIUM, Tiles, console_page, http_get, sample_catalog, serving
from stacube_testing import copy_collection

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: the console's browser tests need Debian's chromium "
                "(apt-get install chromium, or run scripts/build-console.sh as root)",
                allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

expect.set_options(timeout=20_000)  # a collection page waits for the raster API's first answers

DATABASE = "stacube_e2e_access"
ALPHA, BETA = "t-alpha", "t-beta"
PRIVATE = "alpha-scenes"
S2 = "sentinel-2-l1c-eolearn-sample"
TILE = "WebMercatorQuad/14/8854/5837"
CLIENT_ID, AUDIENCE = "stacube-console", "stacube-e2e"
#: the Slovenia sample's area, and a region of it
AREA = [14.5514, 45.8659, 14.5642, 45.8750]
REGION = [14.5530, 45.8680, 14.5600, 45.8720]


@pytest.fixture(scope="module")
def world(database, console_bundle, tmp_path_factory):
    """The server (with OIDC), the test issuer, the workspaces' keys."""
    from oidc_issuer import LocalIssuer
    from stacube.access.workspaces import AccessStore

    catalog = sample_catalog(DATABASE)
    store = AccessStore(catalog.settings)
    for name in (ALPHA, BETA):
        if name not in {w["name"] for w in store.workspaces()}:
            store.create_workspace(name)
    store.set_access(PRIVATE, workspace=ALPHA)  # before the collection: never public
    copy_collection(catalog, PRIVATE)
    keys = {name: store.create_key(name, label="console tests").key for name in (ALPHA, BETA)}
    users = {"ana": {"stacube_workspace": ALPHA}, "bo": {"stacube_workspace": BETA}}
    with LocalIssuer(client_id=CLIENT_ID, redirect_uris=[], audience=AUDIENCE, users=users) as issuer:
        env = {"STACUBE_OIDC_JWKS": f"{issuer.url}/jwks", "STACUBE_OIDC_ISSUER": issuer.url,
               "STACUBE_OIDC_AUDIENCE": AUDIENCE, "STACUBE_OIDC_CLIENT_ID": CLIENT_ID}
        with serving(DATABASE, tmp_path_factory.mktemp("e2e-access"), env) as base:
            issuer.redirect_uris.append(f"{base}/")
            yield SimpleNamespace(base=base, keys=keys, issuer=issuer)


def card(page, cid):
    return page.locator(f'#holdings-cards li.card[data-collection="{cid}"]')


def row(page, cid):
    return page.locator(f'#collections-table tr[data-collection="{cid}"]')


def sign_in_with_key(page, key: str, workspace: str):
    page.click("#signin")
    expect(page.locator("dialog.signin")).to_be_visible()
    page.fill("#signin-key", key)
    page.click("#signin-key-form button[type=submit]")
    expect(page.locator("#account-workspace")).to_have_text(f"workspace {workspace}")


def record_requests(page) -> list:
    seen = []
    page.on("request", lambda r: seen.append(r))
    return seen


def no_horizontal_scroll(page) -> None:
    widths = page.evaluate("""() => ({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,
        inner: window.innerWidth, header: document.querySelector('header.top').scrollWidth,
        headerBox: document.querySelector('header.top').clientWidth,
        access: document.getElementById('access').getBoundingClientRect().right,
        main: document.getElementById('main').scrollWidth, mainBox: document.getElementById('main').clientWidth})""")
    assert widths["doc"] <= widths["inner"] and widths["body"] <= widths["inner"], widths
    assert widths["header"] <= widths["headerBox"], widths
    assert widths["main"] <= widths["mainBox"] and widths["access"] <= widths["inner"], widths


def test_a_sign_in_key_that_is_refused(browser, world, artifacts_dir, request):
    with console_page(browser, world.base, artifacts_dir, request) as page:
        page.goto("/")
        page.click("#signin")
        page.fill("#signin-key", "stk_" + "x" * 43)
        page.click("#signin-key-form button[type=submit]")
        expect(page.locator("#signin-problem")).to_contain_text("invalid or revoked API key")
        assert page.evaluate("() => sessionStorage.getItem('stacube.credentials')") is None
        page.click("dialog.signin button.secondary")  # Cancel
        expect(page.locator("#signin")).to_be_visible()


def test_two_workspaces_see_and_render_what_the_rules_say(browser, world, artifacts_dir, request):
    base, keys = world.base, world.keys
    tile = f"{base}/raster/collections/{PRIVATE}/tiles/{TILE}.png?assets=B04"
    with console_page(browser, base, artifacts_dir, request, name="-alpha") as alpha, \
            console_page(browser, base, artifacts_dir, request, name="-beta") as beta:
        alpha_requests = record_requests(alpha)
        beta_requests = record_requests(beta)
        alpha.goto("/")
        expect(card(alpha, S2)).to_be_visible()
        expect(card(alpha, PRIVATE)).to_have_count(0)  # anonymous: public collections only
        expect(card(alpha, S2).locator(".access")).to_contain_text("Public")

        # t-alpha: its private collection is listed, marked, its tiles render
        sign_in_with_key(alpha, keys[ALPHA], ALPHA)
        expect(card(alpha, PRIVATE).locator(".access")).to_contain_text("Private")
        alpha.goto("/#/collections")
        expect(row(alpha, PRIVATE).locator(".access")).to_contain_text("Private")
        expect(row(alpha, S2).locator(".access")).to_contain_text("Public")
        alpha.goto("/#/items")  # the collection pickers too
        expect(alpha.locator(f'#items-form li:has(input[value="{PRIVATE}"]) .access')).to_contain_text("Private")
        tiles = Tiles(alpha, "/searches/")
        alpha.goto(f"/#/collections/{PRIVATE}")
        expect(alpha.locator("#access-summary")).to_contain_text("Workspace t-alpha")
        expect(alpha.locator("#access-visibility input[value=private]")).to_be_checked()
        tiles.painted()
        assert alpha.request.get(tile, headers={"X-API-Key": keys[ALPHA]}).status == 200

        # t-beta: the private collection is absent, its page and tiles answer 404
        beta.goto("/")
        sign_in_with_key(beta, keys[BETA], BETA)
        expect(card(beta, S2)).to_be_visible()
        expect(card(beta, PRIVATE)).to_have_count(0)
        beta.goto(f"/#/collections/{PRIVATE}")
        expect(beta.locator("#main .error")).to_contain_text("404")
        assert beta.request.get(tile, headers={"X-API-Key": keys[BETA]}).status == 404

        # t-alpha shares it with t-beta from the console
        alpha.fill("#share-with", BETA)
        alpha.click("#share-form button[type=submit]")
        expect(alpha.locator(f'#access-shares li[data-workspace="{BETA}"]')).to_be_visible()
        expect(alpha.locator("#access-visibility input[value=shared]")).to_be_checked()
        for width, height in ((1400, 900), (1024, 768)):
            alpha.set_viewport_size({"width": width, "height": height})
            alpha.locator("#access").scroll_into_view_if_needed()
            alpha.wait_for_timeout(300)
            alpha.screenshot(path=str(artifacts_dir / f"console-sharing-{width}x{height}.png"))
            no_horizontal_scroll(alpha)

        # now t-beta sees it (shared, no sharing controls) and renders it
        beta.goto("/#/collections")
        expect(row(beta, PRIVATE).locator(".access")).to_contain_text("Shared")
        beta_tiles = Tiles(beta, "/searches/")
        beta.goto(f"/#/collections/{PRIVATE}")
        expect(beta.locator("#access-summary")).to_contain_text("Workspace t-alpha")
        expect(beta.locator("#access-visibility")).to_have_count(0)
        beta_tiles.painted()
        assert beta.request.get(tile, headers={"X-API-Key": keys[BETA]}).status == 200
        refused = beta.request.patch(f"{base}/stac/collections/{PRIVATE}/access", data={"visibility": "public"},
                                     headers={"X-API-Key": keys[BETA]})
        assert refused.status == 403 and refused.json()["code"] == "Forbidden"

        # t-alpha stops sharing: gone for t-beta again
        alpha.click(f'#access-shares li[data-workspace="{BETA}"] button')
        expect(alpha.locator("#access-shares")).to_have_text("Shared with no workspace.")
        alpha.check("#access-visibility input[value=private]")
        expect(alpha.locator("#access-summary .access")).to_contain_text("Private")
        beta.goto("/#/")
        expect(card(beta, S2)).to_be_visible()
        expect(card(beta, PRIVATE)).to_have_count(0)
        assert beta.request.get(tile, headers={"X-API-Key": keys[BETA]}).status == 404

        # the keys went out as headers of the APIs' requests, never in a URL
        for requests, key in ((alpha_requests, keys[ALPHA]), (beta_requests, keys[BETA])):
            assert not [r.url for r in requests if key in r.url]
            api_tiles = [r for r in requests if "/raster/" in r.url and "/tiles/" in r.url]
            assert api_tiles and all(r.headers.get("x-api-key") == key for r in api_tiles)

        # signing out forgets the key: the private collection is gone again
        alpha.goto("/#/")
        expect(card(alpha, PRIVATE)).to_be_visible()
        alpha.click("#signout")
        expect(alpha.locator("#signin")).to_be_visible()
        expect(card(alpha, PRIVATE)).to_have_count(0)
        assert alpha.evaluate("() => sessionStorage.length") == 0


def test_oidc_sign_in_with_pkce(browser, world, artifacts_dir, request):
    issuer = world.issuer
    with console_page(browser, world.base, artifacts_dir, request) as page:
        requests = record_requests(page)
        page.goto(f"/#/collections/{PRIVATE}")
        expect(page.locator("#main .error")).to_contain_text("404")  # anonymous
        page.click("#signin")
        page.click("#signin-oidc")
        expect(page).to_have_url(re.compile(re.escape(f"{issuer.url}/authorize?")))
        assert "code_challenge_method=S256" in page.url
        page.fill("#username", "ana")
        page.click("#issuer-submit")
        # back on the page it started from, signed in; the code is gone from the address bar
        expect(page.locator("#account-name")).to_have_text("ana")
        expect(page.locator("#account-workspace")).to_have_text("workspace t-alpha")
        assert page.url == f"{world.base}/#/collections/{PRIVATE}"
        form = issuer.token_requests[-1]
        assert form["grant_type"] == "authorization_code" and len(form["code_verifier"]) >= 43
        tiles = Tiles(page, "/searches/")
        page.reload()  # the token stays for the tab
        expect(page.locator("#access-visibility input[value=private]")).to_be_checked()
        tiles.painted()
        tokens = {r.headers.get("authorization") for r in requests if "/raster/" in r.url and "/tiles/" in r.url}
        assert tokens and all(t and t.startswith("Bearer ey") for t in tokens), tokens
        token = next(iter(tokens)).split(" ", 1)[1]
        assert not [r.url for r in requests if token in r.url or "code_verifier" in r.url]
        # the provider refuses a code twice
        status, _ = issuer.token(dict(form))
        assert status == 400
        page.click("#signout")
        expect(page.locator("#signin")).to_be_visible()
        expect(page.locator("#main .error")).to_contain_text("404")


def test_a_forged_sign_in_answer_is_refused(browser, world, artifacts_dir, request):
    """A code arriving without this tab's request (its state) is never traded for a token."""
    asked = len(world.issuer.token_requests)
    with console_page(browser, world.base, artifacts_dir, request) as page:
        page.goto("/?code=forged-code&state=forged-state#/collections")
        expect(page.locator(".account-notice")).to_contain_text("does not match")
        expect(page.locator("#signin")).to_be_visible()
        assert "code=" not in page.url and page.url.endswith("/#/collections")
    assert len(world.issuer.token_requests) == asked


def api(url: str, key: str | None = None, body: dict | None = None) -> tuple[int, bytes, dict]:
    """GET (or POST ``body`` as JSON) with the key as X-API-Key (none: anonymous)."""
    headers = {"X-API-Key": key} if key else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 method="POST" if body is not None else "GET", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@pytest.fixture(scope="module")
def alpha_job(world):
    """A completed median composite of red and NIR that t-alpha submitted (its output private)."""
    key = world.keys[ALPHA]
    status, body, _ = api(f"{world.base}/jobs", key, {
        "collections": [S2], "bbox": AREA, "datetime": "2015-07-01/2015-09-30", "method": "median",
        "bands": ["red", "nir"], "output_collection": "alpha-composite"})
    assert status == 202, body[:300]
    job_id = json.loads(body)["id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = json.loads(api(f"{world.base}/jobs/{job_id}", key)[1])
        if job["state"] not in ("queued", "running"):
            assert job["state"] == "completed", job.get("error")
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} still {job['state']} after 300 s")


def test_a_workspace_job_preview_and_downloads_carry_the_key(browser, world, alpha_job, artifacts_dir, request):
    import rasterio
    import xarray as xr
    from PIL import Image

    base, key, job = world.base, world.keys[ALPHA], alpha_job
    jobs_url = f"{base}/jobs/{job['id']}"
    assert http_get(jobs_url)[0] == 404  # the job of a workspace: unknown to anyone else
    with console_page(browser, base, artifacts_dir, request, name="-alpha-job") as page:
        requests = record_requests(page)
        page.goto("/")
        sign_in_with_key(page, key, ALPHA)
        page.goto(f"/#/tasks/{job['id']}")
        expect(page.locator("#task-status [data-state]")).to_have_attribute("data-state", "completed", timeout=60_000)

        # the filled preview: fetched with the key, shown from a blob URL, decoded
        page.select_option("#preview-variable", "nir")
        img = page.locator("#filled-preview")
        expect(img).to_have_attribute("data-src", re.compile(r"/preview\.png\?.*variable=nir"))
        page.wait_for_function("() => { const i = document.querySelector('#filled-preview');"
                               " return i.src.startsWith('blob:') && i.dataset.src.includes('variable=nir')"
                               " && i.complete && i.naturalWidth > 0; }", timeout=60_000)
        assert img.evaluate("i => i.decode().then(() => i.naturalWidth * i.naturalHeight)") > 0
        expect(page.locator("#preview-problem")).to_be_empty()
        preview_url = img.get_attribute("data-src")
        assert preview_url.startswith(f"{jobs_url}/preview.png?")
        status, png, headers = api(preview_url, key)
        assert status == 200 and headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png)).size == (img.evaluate("i => i.naturalWidth"), img.evaluate("i => i.naturalHeight"))
        assert http_get(preview_url)[0] == 404  # the same URL without the key

        # a region as NetCDF: saved from a blob URL, the values of the COG there
        page.fill("#area-bbox", ",".join(map(str, REGION)))
        page.locator("#area-bbox").dispatch_event("change")
        link = page.locator("#region-download")
        expect(link).to_have_attribute("href", re.compile(r"region\.nc\?bbox=14\.553"))
        region_url = link.get_attribute("href")
        with page.expect_download(timeout=120_000) as info:
            link.click()
        download = info.value
        assert download.url.startswith("blob:") and download.suggested_filename.endswith("-region.nc")
        nc = open(download.path(), "rb").read()
        ds = xr.open_dataset(io.BytesIO(nc), decode_coords="all")
        assert set(ds.data_vars) == set(job["report"]["variables"]) and ds.sizes["time"] == len(job["report"]["steps"])
        assert http_get(region_url)[0] == 404  # the same URL without the key
        assert api(region_url, key)[0] == 200

        # a COG of the job (under /files): saved with the key; refused without it
        cog_link = page.locator("#cogs-table tr", has_text="nir").locator("a").first
        cog_url = cog_link.get_attribute("href")
        with page.expect_download(timeout=60_000) as info:
            cog_link.click()
        tif = open(info.value.path(), "rb").read()
        assert tif[:4] in (b"II*\x00", b"MM\x00*") and info.value.suggested_filename.endswith(".tif")
        with rasterio.MemoryFile(tif) as mem, mem.open() as src:
            assert src.count == 1 and src.width > 0
        assert http_get(cog_url)[0] == 404

        # the output item's STAC JSON opens in a new tab, from a blob URL
        page.goto(f"/#/items/{job['collection']}/{job['items'][0]}")
        item_link = page.locator("#item-json")
        expect(item_link).to_be_visible()
        with page.context.expect_page(timeout=60_000) as tab_info:
            item_link.click()
        tab = tab_info.value
        tab.wait_for_url(re.compile(r"^blob:"), timeout=60_000)  # opened at the click, then the document
        assert json.loads(tab.locator("body").inner_text())["id"] == job["items"][0]
        assert http_get(item_link.get_attribute("href"))[0] == 404
        tab.close()

        # the key went out as a header, never in a URL
        assert not [r.url for r in requests if key in r.url]
        fetched = [r for r in requests if r.url in (preview_url, region_url, cog_url)]
        assert {r.url for r in fetched} == {preview_url, region_url, cog_url}
        assert all(r.headers.get("x-api-key") == key for r in fetched)
