"""How Maillage serves the console's files (api/console.py), without a browser: the theme setting (the
State's design system only where chosen), the settings the browser starts with, compressed files, the
headers, and what is refused. The journeys themselves run in Chromium (tests/console/)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.settings import REPO_ROOT, Settings

BUILD = REPO_ROOT / "console" / "dist"


def _client(settings: Settings, **changes: object) -> httpx.AsyncClient:
    app = create_app(settings.model_copy(update=changes))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://maillage.test")


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    if not (BUILD / "index.html").is_file():
        pytest.fail("the console is not built: run `make console`", pytrace=False)


@pytest.fixture
async def neutral(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(settings, console_theme="neutral", console_oidc_issuer="https://login.example.test/") as client:
        yield client


async def test_the_neutral_theme_brings_nothing_of_the_state_design_system(neutral: httpx.AsyncClient) -> None:
    page = await neutral.get("/console")
    assert page.status_code == 200
    assert '<html lang="fr" data-theme="neutral"' in page.text
    assert 'href="/console/assets/neutral.css"' in page.text
    assert "dsfr.css" not in page.text
    css = await neutral.get("/console/assets/neutral.css", headers={"Accept-Encoding": "identity"})
    assert css.status_code == 200
    assert "Marianne" not in css.text
    assert ".mx-state-only{display:none!important}" in css.text.replace(" ", "")


async def test_the_dsfr_theme_is_the_state_design_system(settings: Settings) -> None:
    async with _client(settings, console_theme="dsfr") as client:
        page = await client.get("/console")
        css = await client.get("/console/assets/dsfr.css", headers={"Accept-Encoding": "identity"})
    assert 'data-theme="dsfr"' in page.text
    assert 'href="/console/assets/dsfr.css"' in page.text
    assert "Marianne" in css.text


async def test_a_theme_that_does_not_exist_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="console_theme"):
        Settings(**{**settings.model_dump(), "console_theme": "gouv"})


async def test_the_browser_starts_with_the_provider_and_a_redirect_of_the_public_origin(
    neutral: httpx.AsyncClient,
) -> None:
    config = await neutral.get("/console/config.json", headers={"Host": "maillage.test"})
    assert config.status_code == 200
    assert config.headers["cache-control"] == "no-store"
    assert config.json() == {
        "theme": "neutral",
        "lock_minutes": 10,
        "map_style_url": None,
        "oidc": {
            "issuer": "https://login.example.test",
            "client_id": "maillage-console",
            "redirect_uri": "http://maillage.test/console/callback",
            "post_logout_redirect_uri": "http://maillage.test/console",
            "resource": None,
            "allow_http": False,
        },
    }


async def test_plain_http_to_the_provider_only_on_this_machine(settings: Settings) -> None:
    for issuer, allowed in (("http://127.0.0.1:4000", True), ("http://login.example.test", False)):
        async with _client(settings, console_oidc_issuer=issuer) as client:
            config = (await client.get("/console/config.json")).json()
        assert config["oidc"]["allow_http"] is allowed, issuer


async def test_without_a_provider_the_console_says_login_is_not_configured(settings: Settings) -> None:
    async with _client(settings, console_oidc_issuer="") as client:
        config = (await client.get("/console/config.json")).json()
    assert config["oidc"] is None


async def test_the_page_and_its_files_carry_a_strict_policy(neutral: httpx.AsyncClient) -> None:
    page = await neutral.get("/console")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "connect-src 'self' https://login.example.test;" in policy
    assert "frame-ancestors 'none'" in policy
    assert "frame-src 'none'" in policy  # MapLibre's blob: is for its worker, never a frame
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    script = await neutral.get("/console/assets/console.js")
    assert script.headers["content-security-policy"] == policy
    assert script.headers["x-content-type-options"] == "nosniff"


async def test_files_are_sent_compressed_to_browsers_that_take_gzip(neutral: httpx.AsyncClient) -> None:
    plain = await neutral.get("/console/assets/console.js", headers={"Accept-Encoding": "identity"})
    packed = await neutral.get("/console/assets/console.js", headers={"Accept-Encoding": "gzip, br"})
    assert plain.status_code == packed.status_code == 200
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["content-type"] == "text/javascript; charset=utf-8"
    assert packed.headers["vary"] == "Accept-Encoding"
    # httpx decodes gzip: the same bytes either way, and fewer of them on the wire.
    assert packed.content == plain.content == (BUILD / "assets" / "console.js").read_bytes()
    sent = int(packed.headers["content-length"])
    assert sent == (BUILD / "assets" / "console.js.gz").stat().st_size
    assert sent < len(plain.content) / 2
    assert gzip.decompress((BUILD / "assets" / "console.js.gz").read_bytes()) == plain.content
    again = await neutral.get(
        "/console/assets/console.js", headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["etag"]}
    )
    assert again.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/console/assets/../index.html",
        "/console/assets/%2e%2e/%2e%2e/api/settings.py",
        "/console/assets/nothing.js",
        "/console/other",
    ],
)
async def test_nothing_outside_the_build_is_served(neutral: httpx.AsyncClient, path: str) -> None:
    response = await neutral.get(path)
    assert response.status_code == 404
    assert "BaseSettings" not in response.text


async def test_without_a_build_the_page_says_how_to_make_one(settings: Settings, tmp_path: Path) -> None:
    async with _client(settings, console_dir=tmp_path) as client:
        page = await client.get("/console")
    assert page.status_code == 503
    assert "make run" in page.text
