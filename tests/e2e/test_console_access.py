"""Signing in to the console, and what each workspace sees and renders there.

A server of its own (a database of its own, so the keys it holds do not turn access control on
for the other console tests) with OIDC configured against a local test issuer
(:mod:`oidc_issuer`): two workspaces with API keys made through the library, a private
collection of t-alpha (a copy of the Slovenia scenes). Each test drives the console in one
browser context per user (their own sessionStorage).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from console_helpers import CHROMIUM, Tiles, console_page, sample_catalog, serving
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
