"""How the Python app serves the console: page, configuration, assets, fallback (no browser)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from stacube.settings import Settings


@pytest.fixture
def dist(tmp_path):
    (tmp_path / "console" / "assets").mkdir(parents=True)
    (tmp_path / "index.html").write_text(
        '<!doctype html><script type="module" src="./console/assets/index-abc.js"></script>')
    (tmp_path / "console" / "assets" / "index-abc.js").write_text("console.log('stacube');" * 100)
    return tmp_path


def client_with(monkeypatch, **env) -> TestClient:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from stacube_services.app import create_app

    return TestClient(create_app(Settings()))  # no lifespan: these routes need no database


def test_console_page_config_and_assets(monkeypatch, dist):
    c = client_with(monkeypatch, STACUBE_CONSOLE_DIST=str(dist),
                    STACUBE_CONSOLE_BASEMAP_URL="https://tile.example.org/{z}/{x}/{y}.png")
    page = c.get("/")
    assert page.status_code == 200 and "console/assets/index-abc.js" in page.text
    assert page.headers["cache-control"] == "no-cache"
    config = c.get("/console/config.json").json()
    assert config["stac_url"] == "stac" and config["raster_url"] == "raster" and config["jobs_url"] == "jobs"
    assert config["basemap"]["tiles"] == ["https://tile.example.org/{z}/{x}/{y}.png"]
    asset = c.get("/console/assets/index-abc.js", headers={"Accept-Encoding": "gzip"})
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert asset.headers.get("content-encoding") == "gzip"
    assert c.get("/console/assets/nope.js").status_code == 404
    assert c.get("/console", follow_redirects=False).status_code == 307
    assert {link["rel"] for link in c.get("/api").json()["links"]} >= {"stac", "raster"}


def test_console_base_urls_are_configurable(monkeypatch, dist):
    c = client_with(monkeypatch, STACUBE_CONSOLE_DIST=str(dist),
                    STACUBE_CONSOLE_STAC_URL="https://api.example.org/stac",
                    STACUBE_CONSOLE_RASTER_URL="https://tiles.example.org")
    config = c.get("/console/config.json").json()
    assert config["stac_url"] == "https://api.example.org/stac"
    assert config["raster_url"] == "https://tiles.example.org"
    assert config["basemap"] is None  # no basemap unless configured: no internet needed
    assert config["auth"] == {"oidc": None}  # API keys only


def test_console_config_names_the_oidc_client(monkeypatch, dist):
    c = client_with(monkeypatch, STACUBE_CONSOLE_DIST=str(dist), STACUBE_OIDC_JWKS="https://id.example.org/jwks",
                    STACUBE_OIDC_ISSUER="https://id.example.org", STACUBE_OIDC_CLIENT_ID="console")
    assert c.get("/console/config.json").json()["auth"] == {
        "oidc": {"issuer": "https://id.example.org", "client_id": "console", "scopes": "openid"}}
    # no client id (or no key set to verify tokens with): no OIDC sign-in offered
    c = client_with(monkeypatch, STACUBE_CONSOLE_DIST=str(dist), STACUBE_OIDC_CLIENT_ID="")
    assert c.get("/console/config.json").json()["auth"] == {"oidc": None}


def test_unbuilt_console_says_how_to_build_it(monkeypatch, tmp_path):
    c = client_with(monkeypatch, STACUBE_CONSOLE_DIST=str(tmp_path / "missing"))
    page = c.get("/")
    assert page.status_code == 200 and "scripts/build-console.sh" in page.text
    assert 'href="stac/"' in page.text
