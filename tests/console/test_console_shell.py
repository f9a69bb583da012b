"""The console's shell: login for each role, tokens kept in memory only, the inactivity lock, the size
budgets, the security headers and no request to a third party."""

from __future__ import annotations

import json
import re
import zlib
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from playwright.sync_api import Page, Request, expect

from tests.console.conftest import (
    ARTIFACTS,
    ConsoleServer,
    NetworkLog,
    Response,
    check_a11y,
    login,
    network_log,
    screenshot,
)

# console/src/main.js: ROLE_NAMES and the tabs of BY_ROLE, in order.
ROLES = {
    "specialiste": ("Écoutant·e du 119", ["Rechercher", "Dossier et parcours"]),
    "analyste-93": ("Département", ["Statistiques"]),
    "partenaire": ("Partenaire", ["Nos services", "Orientations reçues"]),
    "admin": ("Administration", ["Rechercher", "Statistiques"]),
}
LOCK_MINUTES = 10  # api/settings.py console_lock_minutes, not overridden by the fixture
JS_BUDGET = 150 * 1024  # encoded bytes of JavaScript before the search form can be used
TOTAL_BUDGET = 650 * 1024  # encoded bytes from the console's origin once a search drew its map


def workspace_ready(page: Page) -> None:
    """The first workspace drawn: its tab is current and the placeholder is gone."""
    expect(page.locator("#tabs button[aria-current=page]")).to_have_count(1)
    expect(page.locator("#contenu")).not_to_contain_text("Chargement…")


def search(page: Page, place: str, choice: str) -> None:
    """A search around a commune chosen from the suggestions, with the form's defaults (30 km)."""
    field = page.get_by_role("combobox", name=re.compile("Lieu où se trouve"))
    field.fill(place)
    page.get_by_role("option", name=choice, exact=True).click()
    page.locator("#search-form button[type=submit]").click()
    expect(page.locator("#results > li").first).to_be_visible()


def drawn_colours(png: bytes) -> int:
    """How many distinct byte values a PNG's (filtered) pixel rows hold: a handful for a blank
    rectangle, far more for a drawn map (lines, fills, anti-aliasing)."""
    chunks, at = [], 8
    while at < len(png):
        length = int.from_bytes(png[at : at + 4], "big")
        if png[at + 4 : at + 8] == b"IDAT":
            chunks.append(png[at + 8 : at + 8 + length])
        at += 12 + length
    return len(set(zlib.decompress(b"".join(chunks))))


def test_login_screen_is_accessible(page: Page) -> None:
    page.goto("/console")
    expect(page.locator("#login")).to_have_text("Se connecter")
    expect(page.locator("#who")).to_have_text("")
    expect(page.locator("#tabs")).to_be_hidden()
    assert page.locator("html").get_attribute("data-theme") == "dsfr"
    check_a11y(page, "login")
    screenshot(page, "login")


@pytest.mark.parametrize("user", list(ROLES))
def test_each_role_sees_its_workspaces(page: Page, console_server: ConsoleServer, user: str) -> None:
    role, tabs = ROLES[user]
    login(page, user)
    who = page.locator("#who").inner_text()
    assert who.split(" · ")[0] == role, who
    # Scoped roles name what they act for: the organisation or the collectivité of their binding.
    if user == "partenaire":
        with psycopg.connect(console_server.owner_url) as conn:
            row = conn.execute(
                "SELECT name FROM organisation WHERE id = %s", (console_server.partner_organisation,)
            ).fetchone()
        assert row is not None
        assert who == f"{role} · {row[0]}"
    elif user == "analyste-93":
        assert "Seine-Saint-Denis" in who, who
    elif user == "admin":
        assert who == role
    expect(page.locator("#tabs button")).to_have_text(tabs)
    expect(page.locator("#tabs button").first).to_have_attribute("aria-current", "page")
    expect(page.locator("#logout")).to_be_visible()
    workspace_ready(page)
    check_a11y(page, f"workspace-{user}")
    screenshot(page, f"workspace-{user}")


def test_tokens_stay_in_memory(page: Page) -> None:
    login(page, "specialiste")
    workspace_ready(page)
    stored = page.evaluate(
        """async () => ({
            local: Object.keys(localStorage),
            session: Object.keys(sessionStorage),
            cookie: document.cookie,
            databases: indexedDB.databases ? (await indexedDB.databases()).map((d) => d.name) : [],
            caches: await caches.keys().catch(() => []),
        })"""
    )
    assert stored == {"local": [], "session": [], "cookie": "", "databases": [], "caches": []}
    assert page.url.endswith("/console"), "the authorization code must leave the address bar"

    page.reload()
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#who")).to_have_text("")
    expect(page.locator("#tabs")).to_be_hidden()
    expect(page.locator("#search-form")).to_have_count(0)


def test_inactivity_locks_the_console(page: Page) -> None:
    page.clock.install()
    login(page, "specialiste")
    workspace_ready(page)
    place = page.get_by_role("combobox", name=re.compile("Lieu où se trouve"))
    place.fill("Montreuil")  # typing is activity: the countdown starts again from here

    page.clock.fast_forward((LOCK_MINUTES - 1) * 60_000)
    expect(page.locator("#who")).not_to_have_text("")
    expect(page.locator("#search-form")).to_be_visible()

    page.clock.fast_forward(2 * 60_000)
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#who")).to_have_text("")
    expect(page.locator("#logout")).to_be_hidden()
    expect(page.locator("#tabs button")).to_have_count(0)
    main = page.locator("#contenu")
    expect(main).to_contain_text(f"{LOCK_MINUTES} minutes d’inactivité")
    # Nothing of the previous screen is left in the page, not even out of sight.
    html = page.content()
    assert "Montreuil" not in html
    assert "search-form" not in html
    assert main.locator("input, select, textarea, form").count() == 0
    # The page was loaded again: the browser's record of the requests made (places, cases) went with it,
    # and all that stayed is why it locked.
    requested = page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
    assert not [url for url in requested if "/v1/" in url], requested
    kept = page.evaluate("JSON.stringify({...sessionStorage})")
    assert "Montreuil" not in kept
    assert json.loads(kept).keys() == {"maillage.locked"}

    # Whoever sits down next is not let in by the provider's session: it asks for a login again.
    with page.expect_navigation():
        page.locator("#login").click()
    expect(page.locator("input[name=login]")).to_be_visible()


def test_logging_out_ends_the_providers_session(page: Page) -> None:
    login(page, "partenaire")
    workspace_ready(page)
    page.locator("#logout").click()
    # The provider asks to confirm (the local one does; others may not), then sends the browser back.
    page.get_by_role("button", name="Oui, me déconnecter").click()
    page.wait_for_url(re.compile(r"/console$"))
    expect(page.locator("#contenu")).to_contain_text("Vous êtes déconnecté·e de la console.")
    expect(page.locator("#who")).to_have_text("")
    with page.expect_navigation():
        page.locator("#login").click()
    expect(page.locator("input[name=login]")).to_be_visible()
    # Logging in again, as someone else, shows that person's console and nothing of the last one.
    page.locator("input[name=login]").fill("analyste-93")
    page.locator("input[name=password]").fill("any password")
    with page.expect_navigation():
        page.locator("button[type=submit]").click()
    consent = page.locator("input[name=prompt][value=consent]")
    if consent.count():
        with page.expect_navigation():
            page.locator("button[type=submit]").click()
    expect(page.locator("#who")).to_contain_text("Seine-Saint-Denis")
    assert page.evaluate("Object.keys(sessionStorage)") == []


def _console_origin(server: ConsoleServer, response: Response) -> bool:
    return response.url.startswith(f"{server.base_url}/")


def _own_files(server: ConsoleServer, response: Response) -> bool:
    """What the console loads from its origin, except the API's JSON and the map's tiles (/v1/...)."""
    return _console_origin(server, response) and not urlsplit(response.url).path.startswith("/v1/")


def test_budgets(page: Page, console_server: ConsoleServer) -> None:
    log: NetworkLog = network_log(page)
    login(page, "specialiste")
    form = page.locator("#search-form")
    expect(form).to_be_visible()
    expect(form).to_be_enabled()
    expect(form.locator("button[type=submit]")).to_be_enabled()
    log.settle()
    before_search = log.entries()
    requested = log.requested()
    scripts = [r for r in before_search if r.type == "Script"]
    js_bytes = sum(r.bytes or 0 for r in scripts)
    assert not [url for url in requested if "maplibre-gl" in url], "MapLibre was loaded before any map was drawn"

    assert page.evaluate("!!document.createElement('canvas').getContext('webgl2')"), "no WebGL: the map cannot draw"
    search(page, "Lyon", "Lyon (69)")
    map_box = page.locator("#results-map")
    expect(map_box).to_be_visible()
    expect(map_box.locator("canvas")).to_be_visible()
    log.settle(quiet_ms=500)
    # WebGL by SwiftShader: the map is drawn (France's territories from /v1/tiles), not a blank box.
    assert drawn_colours(map_box.locator("canvas").screenshot()) > 32, "the map canvas is blank"
    screenshot(page, "search-results")
    after = log.entries()
    assert any(r.url.endswith("/console/assets/vendor/maplibre-gl.js") for r in after), "the map was not loaded"
    own = [r for r in after if _own_files(console_server, r)]
    own_bytes = sum(r.bytes or 0 for r in own)
    api_bytes = sum(r.bytes or 0 for r in after if _console_origin(console_server, r) and r not in own)

    figures = {
        "javascript_before_search_form_bytes": js_bytes,
        "javascript_before_search_form_files": sorted({urlsplit(r.url).path for r in scripts}),
        "console_origin_after_first_search_bytes": own_bytes,
        "console_origin_after_first_search_by_type": log.bytes_by_type(lambda r: _own_files(console_server, r)),
        "excluded_api_and_tiles_bytes": api_bytes,
        "largest": [
            {"path": urlsplit(r.url).path, "bytes": r.bytes} for r in sorted(own, key=lambda r: -(r.bytes or 0))[:8]
        ],
        "budgets": {"javascript_before_search_form": JS_BUDGET, "console_origin_after_first_search": TOTAL_BUDGET},
        "counted": "bytes on the wire (DevTools encodedDataLength: headers and gzip body) of every response in the "
        "session, the provider's pages included for JavaScript; the console origin total leaves out /v1 "
        "(API JSON and vector tiles)",
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "budget.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(f"\nconsole budget: {json.dumps(figures, indent=2)}")  # noqa: T201 - the figures of the closing note

    assert js_bytes < JS_BUDGET, f"{js_bytes} bytes of JavaScript before the search form (budget {JS_BUDGET})"
    assert own_bytes < TOTAL_BUDGET, f"{own_bytes} bytes from the console's origin (budget {TOTAL_BUDGET})"

    # Scripts and style sheets leave compressed (the build's gzip copies).
    assets = [
        r
        for r in after
        if r.status == 200 and "/console/assets/" in r.url and r.url.endswith((".js", ".css")) and r.bytes
    ]
    assert assets
    plain = [r.url for r in assets if r.content_encoding != "gzip"]
    assert not plain, f"served without gzip: {plain}"


def test_security_headers(console_server: ConsoleServer) -> None:
    page = httpx.get(f"{console_server.base_url}/console", timeout=10)
    assert page.status_code == 200
    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in (part.strip() for part in page.headers["content-security-policy"].split(";"))
        if directive
    }
    assert policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["default-src"] == ["'none'"]
    assert set(policy["connect-src"]) == {"'self'", console_server.issuer}
    assert "no-store" in page.headers["cache-control"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    # No inline script: the policy would refuse it.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)

    config = httpx.get(f"{console_server.base_url}/console/config.json", timeout=10)
    assert config.status_code == 200
    assert "no-store" in config.headers["cache-control"]
    oidc = config.json()["oidc"]
    assert oidc["issuer"] == console_server.issuer
    assert oidc["client_id"] == "maillage-console"
    assert oidc["redirect_uri"] == f"{console_server.base_url}/console/callback"
    assert config.json()["theme"] == "dsfr"

    asset = httpx.get(f"{console_server.base_url}/console/assets/console.js", timeout=10)
    assert asset.status_code == 200
    assert "script-src 'self'" in asset.headers["content-security-policy"]


def test_no_third_party_is_ever_asked(page: Page, console_server: ConsoleServer) -> None:
    """A whole specialist session — login, search, map — asks the console's origin and the provider's
    and nobody else (no CDN, no font service, no tile server), its map's worker included. The provider's
    own pages are the provider's business (the local one's login page asks Google Fonts): only what the
    console's documents ask is checked."""
    seen: list[tuple[str, str]] = []  # (URL, the document that asked for it)

    def record(request: Request) -> None:
        try:
            document = request.frame.url
        except Exception:  # a service worker's request has no frame
            document = ""
        seen.append((request.url, document))

    page.context.on("request", record)
    log = network_log(page)
    login(page, "specialiste")
    search(page, "Marseille", "Marseille (13)")
    expect(page.locator("#results-map canvas")).to_be_visible()
    log.settle(quiet_ms=500)
    provider = f"{console_server.issuer}/"
    asked = [(url, document) for url, document in seen if not document.startswith(provider)]
    asked += [(r.url, r.document) for r in log.requests() if not r.document.startswith(provider)]
    allowed = (f"{console_server.base_url}/", provider, "data:", "blob:")
    assert any(url.startswith(provider) for url, _ in asked), "the login went by the provider"
    assert any("/v1/services/search" in url for url, _ in asked)
    for _ in range(100):  # the map's worker asks for its tiles once the map has its size
        if any("/v1/tiles/" in url for url, _ in seen):
            break
        page.wait_for_timeout(100)
    else:
        pytest.fail("the map's tiles (asked by its worker) were never seen")
    outside = sorted({f"{url} (from {document})" for url, document in asked if not url.startswith(allowed)})
    assert not outside, f"requests to third parties: {outside}"
    print(f"\nthe provider's own pages asked: {sorted({u for u, d in seen if d.startswith(provider)})}")  # noqa: T201


def test_every_new_console_authenticates_again(page: Page) -> None:
    """The provider's session never lets someone into a console by itself: a new tab asks for a login."""
    login(page, "specialiste")
    workspace_ready(page)
    other = page.context.new_page()
    other.goto("/console")
    with other.expect_navigation():
        other.locator("#login").click()
    expect(other.locator("input[name=login]")).to_be_visible()
    other.close()


def test_a_token_that_runs_out_while_at_work_is_renewed_without_a_password(page: Page) -> None:
    page.clock.install()
    login(page, "specialiste")
    workspace_ready(page)
    place = page.get_by_role("combobox", name=re.compile("Lieu où se trouve"))
    # Active all along (never 10 minutes idle) until the 15-minute token runs out, 30 s early.
    for minutes in (8, 6):
        page.clock.fast_forward(minutes * 60_000)
        place.press("Shift")
    page.clock.fast_forward(60_000)
    expect(page.locator("#contenu")).to_contain_text("Votre session a expiré.")
    expect(page.locator("#who")).to_have_text("")
    # The same person, a moment later: the provider's session brings them back, no form to fill.
    page.locator("#login").click()
    expect(page.locator("#who")).not_to_have_text("", timeout=15_000)
    assert page.evaluate("Object.keys(sessionStorage)") == []
