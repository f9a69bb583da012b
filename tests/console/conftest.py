"""End-to-end tests of the console (/console), driving the distribution's Chromium with Playwright.

Fixture API (everything below is set up once per session, except the pages):

- `console_server` (session): a `ConsoleServer` — `maillage serve` on a fresh database with the demo
  listings, the local OpenID provider (its demo users: specialiste, analyste-93, partenaire, admin; any
  password) and the identity bindings of their groups; theme dsfr. Attributes: `base_url`
  (http://127.0.0.1:<port>), `app_url` and `owner_url` (database URLs for psycopg: the API's role and
  the schema owner; `plain()` is applied already), `issuer`, `log` (the server's log file),
  `provider_log`, `partner_organisation` (the id of the organisation the `partenaire` user acts for),
  `var` (the server's var directory) and `console_dir` (the build served: a copy of console/dist taken
  at the start, so that a `make console` meanwhile cannot disturb the run).
- `browser` (package, i.e. all of tests/console/): Playwright's Chromium (/usr/bin/chromium, headless,
  WebGL by SwiftShader; Playwright passes --no-sandbox, which root needs). Host names other than
  127.0.0.1 do not resolve in it: nothing reaches the Internet. Console tests must be sync functions
  (Playwright's sync API and pytest-asyncio's loop cannot run at once).
- `page` (test): a page in a fresh context: 1280×900, fr-FR, Europe/Paris, and `base_url` set to the
  server's, so `page.goto("/console")` works. `new_page()` (test): a factory of more such pages, each in
  a context of its own (two people at once); all closed after the test.
- Helpers, each both a plain function importable from here and a fixture of the same name (use either):
  - `login(page, user)`: opens /console, clicks "Se connecter" (#login), fills the provider's form,
    consents, waits until #who has text. Works on pages of `page` / `new_page` (it navigates to the
    relative "/console"). Returns None.
  - `check_a11y(page, name)`: axe-core (WCAG 2.0/2.1 A and AA) on the page as it is; fails on any
    serious or critical violation; the full result goes to var/artifacts/console/axe-{name}.json.
    Returns the axe result.
  - `screenshot(page, name)`: a full-page PNG, var/artifacts/console/{name}.png; returns its path.
  - `network_log(page)`: a `NetworkLog` recording every response the page receives through a CDP
    session (bytes on the wire: encodedDataLength). Attach it BEFORE navigating. `.entries()` is a
    snapshot of what finished so far, `.bytes_by_type()` sums by resource type, `.total()` sums,
    `.requested()` lists every URL the page asked for (failed ones included), `.requests()` the same
    with the document that asked, `.settle()` waits until the network is quiet. Requests of dedicated
    workers (MapLibre's tiles) are not in it: `page.context.on("request", ...)` sees those.
  - For the inactivity lock, Playwright's clock: `page.clock.install()` before `login`, then
    `page.clock.fast_forward(ms)`.
- `ARTIFACTS`: var/artifacts/console/ (git-ignored with var/). A failed test leaves a screenshot there
  (`failed-<test>.png`).

The console must be built (`make console`): without console/dist/index.html, or with a build older than
a file of console/src, the tests fail (never skip).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, Playwright, expect, sync_playwright

from api.cluster import Cluster
from api.local_oidc import (
    DEMO_AUDIENCE,
    DEMO_CLIENT,
    DEMO_RESOURCE,
    DEMO_USERS,
    bind_demo_groups,
    demo_config,
    demo_keys,
    free_port,
    running,
)
from api.settings import REPO_ROOT
from directory import hours
from directory.demo import seed_demo
from tests.database import create_test_database, plain
from tests.processes import Server

ARTIFACTS = REPO_ROOT / "var" / "artifacts" / "console"
CONSOLE_BUILD = REPO_ROOT / "console" / "dist" / "index.html"
AXE = REPO_ROOT / "console" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
# WebGL without a GPU (MapLibre needs it): ANGLE on SwiftShader, the software renderer Chromium ships.
# Playwright adds --no-sandbox itself (its chromium_sandbox defaults to False), which root needs.
# Every host name but the loopback's fails to resolve: the tests never reach the Internet (the requests
# still show in the logs, for tests/console/test_console_shell.py to catch any to a third party).
CHROMIUM_ARGS = [
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
USERS = tuple(user for user, _, _ in DEMO_USERS)
# Demo listings: fewer than `maillage run`'s 300, enough for every city of the demo to have results.
DEMO_SERVICES = 120
TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class ConsoleServer:
    base_url: str
    app_url: str
    owner_url: str
    issuer: str
    log: Path
    provider_log: Path
    partner_organisation: uuid.UUID
    var: Path
    console_dir: Path  # the build it serves: a copy of console/dist taken when the session started


# ---------------------------------------------------------------------------------------------------
# The server, its provider and its data


def _bind(app_url: str, issuer: str) -> None:
    """The demo groups' bindings, written as `maillage run` writes them, in a thread of its own (an
    event loop may already run in this one)."""
    from api.db import make_engine
    from api.jobs import in_transaction

    async def work() -> None:
        engine = make_engine(app_url, pool_size=1, statement_timeout_ms=60_000)
        try:
            await in_transaction(engine, lambda session: bind_demo_groups(session, issuer, created_by="tests"))
        finally:
            await engine.dispose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work()).result()


@pytest.fixture(scope="session")
def console_server(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    if not CONSOLE_BUILD.is_file():
        pytest.fail(f"the console is not built ({CONSOLE_BUILD} is missing): run `make console` first", pytrace=False)
    sources = [p for p in (REPO_ROOT / "console" / "src").rglob("*") if p.is_file()]
    newer = [p for p in sources if p.stat().st_mtime > CONSOLE_BUILD.stat().st_mtime]
    if newer:
        pytest.fail(
            f"the console's build is older than {newer[0].relative_to(REPO_ROOT)}: run `make console` first",
            pytrace=False,
        )
    var = tmp_path_factory.mktemp("console")
    # Served from a copy: a `make console` run meanwhile (it empties dist/ first) cannot pull the
    # files from under the tests.
    dist = shutil.copytree(CONSOLE_BUILD.parent, var / "console-dist")
    name = create_test_database(cluster, suffix="_console")
    app_url, owner_url = cluster.app_url(name), cluster.url(name)
    # Both ports chosen first: the server must know its provider, the provider its redirect URI. The
    # server then starts (seconds of imports) while the data is seeded and the provider starts.
    server = Server(app_url, var)
    provider_port = free_port()
    issuer = f"http://127.0.0.1:{provider_port}"
    server.env.update(
        {
            "MAILLAGE_OWNER_DATABASE_URL": owner_url,
            "MAILLAGE_PUBLIC_BASE_URL": server.base,
            "MAILLAGE_OIDC_ISSUERS": json.dumps(
                [{"issuer": issuer, "audience": DEMO_AUDIENCE, "algorithms": ["ES256"]}]
            ),
            "MAILLAGE_CONSOLE_THEME": "dsfr",
            "MAILLAGE_CONSOLE_OIDC_ISSUER": issuer,
            "MAILLAGE_CONSOLE_CLIENT_ID": DEMO_CLIENT,
            "MAILLAGE_CONSOLE_OIDC_RESOURCE": DEMO_RESOURCE,
            "MAILLAGE_CONSOLE_DIR": str(dist),
        }
    )
    provider_log = var / "provider.log"
    keys = demo_keys(var / "oidc" / "keys.json")  # ES256 for access tokens, RS256 for ID tokens
    config = demo_config(keys, [f"{server.base}/console/callback"])
    try:
        server.launch()
        with psycopg.connect(plain(owner_url)) as conn:
            seed_demo(conn, count=DEMO_SERVICES)
            # As `maillage seed --demo` does; the template's coverage needs nothing more (its refresh
            # would take seconds to find so).
            hours.refresh(conn)
            row = conn.execute("SELECT id FROM organisation WHERE demo ORDER BY seed_key LIMIT 1").fetchone()
        assert row is not None, "the demo seed made no organisation"
        with running(config, provider_log, port=provider_port) as provider:
            assert provider.issuer == issuer
            _bind(app_url, issuer)
            server.wait_ready()
            yield ConsoleServer(
                base_url=server.base,
                app_url=plain(app_url),
                owner_url=plain(owner_url),
                issuer=issuer,
                log=server.log,
                provider_log=provider_log,
                partner_organisation=row[0],
                var=var,
                console_dir=dist,
            )
    finally:
        server.stop()
        cluster.drop_database(name)


# ---------------------------------------------------------------------------------------------------
# The browser and its pages


# Package scope: Playwright's sync API keeps an event loop marked running in this thread for as long as
# it lives, and pytest-asyncio's tests (the rest of the suite) refuse to start under it. It stops with
# the last test of tests/console/ — whose tests must therefore be plain (sync) functions.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs the distribution's Chromium", pytrace=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


def _context(browser: Browser, server: ConsoleServer) -> BrowserContext:
    context = browser.new_context(
        base_url=server.base_url,
        viewport={"width": 1280, "height": 900},
        locale="fr-FR",
        timezone_id="Europe/Paris",
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
def new_page(
    browser: Browser, console_server: ConsoleServer, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Page]]:
    contexts: list[BrowserContext] = []
    pages: list[Page] = []

    def make() -> Page:
        context = _context(browser, console_server)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        return page

    yield make
    _after(request, pages)
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    return new_page()


def _after(request: pytest.FixtureRequest, pages: list[Page]) -> None:
    """A screenshot of each page of a failed test, for the artifacts."""
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed:
        return
    stem = re.sub(r"[^\w.-]+", "_", request.node.name)
    for n, page in enumerate(pages):
        if not page.is_closed():
            with contextlib.suppress(Exception):  # a screenshot must never hide the failure itself
                page.screenshot(path=ARTIFACTS / f"failed-{stem}{f'-{n}' if n else ''}.png", full_page=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# ---------------------------------------------------------------------------------------------------
# Helpers: plain functions, also served as fixtures of the same name


def login(page: Page, user: str) -> None:
    """Log in as one of the demo users through the provider's own pages: oidc-provider's development
    login form (`login`, `password`: any), then its consent page ("Continue"); either is skipped when the
    provider's session in this context makes it needless. Done once #who names the role."""
    assert user in USERS, f"{user!r} is not a demo user ({', '.join(USERS)})"
    page.goto("/console")
    with page.expect_navigation():
        page.locator("#login").click()
    prompt = page.locator("input[name=prompt]")
    back = page.locator("#who:not(:empty)")
    for _ in range(3):
        prompt.or_(back).first.wait_for(state="attached")
        if prompt.count() == 0:
            break  # back on the console
        if prompt.get_attribute("value") == "login":
            page.locator("input[name=login]").fill(user)
            page.locator("input[name=password]").fill("any password")
        with page.expect_navigation():
            page.locator("button[type=submit]").click()
    expect(page.locator("#who")).not_to_have_text("")


WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def check_a11y(page: Page, name: str) -> dict[str, Any]:
    """axe-core on the page as it is now; fails on a serious or critical violation."""
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing ({AXE}): run `make console` (npm ci in console/)", pytrace=False)
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Through the DevTools protocol, not a <script> element: the console's CSP allows no inline script.
        # (";0": the script's last value is then no function for Playwright to call.)
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    result: dict[str, Any] = page.evaluate(
        "(tags) => axe.run(document, {resultTypes: ['violations'], runOnly: {type: 'tag', values: tags}})",
        WCAG_TAGS,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    blocking = [v for v in result["violations"] if v.get("impact") in ("serious", "critical")]
    if blocking:
        lines = [
            f"- {v['id']} ({v['impact']}): {v['help']} — {', '.join(str(n['target']) for n in v['nodes'][:3])}"
            for v in blocking
        ]
        pytest.fail(f"accessibility violations on {name}:\n" + "\n".join(lines), pytrace=False)
    return result


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


@dataclass
class Response:
    """One response as the browser received it: `bytes` is what came over the wire (headers and
    compressed body), None until it finished loading."""

    url: str
    status: int
    mime_type: str
    type: str  # the DevTools resource type: Document, Script, Stylesheet, Font, Image, Fetch, XHR…
    content_encoding: str
    bytes: int | None = None


@dataclass(frozen=True)
class Request:
    url: str
    document: str  # the URL of the document it was asked for (DevTools documentURL)
    type: str


class NetworkLog:
    """Every response of a page, from the DevTools protocol (Network.responseReceived, then
    Network.loadingFinished's encodedDataLength). The page's own target only: requests of dedicated
    workers (MapLibre fetches its vector tiles in one) are not seen here."""

    def __init__(self, page: Page) -> None:
        self._lock = threading.Lock()
        self._responses: dict[str, Response] = {}
        self._requests: list[Request] = []
        self.session: CDPSession = page.context.new_cdp_session(page)
        self.session.on("Network.requestWillBeSent", self._request)
        self.session.on("Network.responseReceived", self._response)
        self.session.on("Network.loadingFinished", self._finished)
        self.session.send("Network.enable")

    def _request(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(
                Request(url=event["request"]["url"], document=event.get("documentURL", ""), type=event.get("type", ""))
            )

    def _response(self, event: dict[str, Any]) -> None:
        response = event["response"]
        headers = {key.lower(): value for key, value in response.get("headers", {}).items()}
        with self._lock:
            self._responses[event["requestId"]] = Response(
                url=response["url"],
                status=int(response["status"]),
                mime_type=response.get("mimeType", ""),
                type=event.get("type", "Other"),
                content_encoding=headers.get("content-encoding", ""),
            )

    def _finished(self, event: dict[str, Any]) -> None:
        with self._lock:
            if (response := self._responses.get(event["requestId"])) is not None:
                response.bytes = int(event["encodedDataLength"])

    def entries(self, *, finished: bool = True) -> list[Response]:
        """A snapshot of the responses so far (only those fully loaded unless `finished=False`)."""
        with self._lock:
            return [Response(**vars(r)) for r in self._responses.values() if r.bytes is not None or not finished]

    def requested(self) -> list[str]:
        """Every URL the page asked for so far, in order (failed and unfinished ones included)."""
        with self._lock:
            return [r.url for r in self._requests]

    def requests(self) -> list[Request]:
        """The same, with the document each was asked for."""
        with self._lock:
            return list(self._requests)

    def bytes_by_type(self, where: Callable[[Response], bool] = lambda _: True) -> dict[str, int]:
        totals: dict[str, int] = {}
        for r in self.entries():
            if where(r):
                totals[r.type] = totals.get(r.type, 0) + (r.bytes or 0)
        return totals

    def total(self, where: Callable[[Response], bool] = lambda _: True) -> int:
        return sum(self.bytes_by_type(where).values())

    def settle(self, quiet_ms: int = 300, timeout_ms: int = TIMEOUT_MS) -> None:
        """Wait until every response seen has finished and nothing new came for `quiet_ms`."""
        deadline = time.monotonic() + timeout_ms / 1000
        seen = -1
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                count = len(self._requests)
                pending = any(r.bytes is None for r in self._responses.values())
            if count != seen or pending:
                seen, quiet_since = count, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_ms / 1000:
                return
            # Playwright's sync API delivers events while it waits, not while Python sleeps.
            self.session.send("Runtime.evaluate", {"expression": "0"})
            time.sleep(0.05)


def network_log(page: Page) -> NetworkLog:
    return NetworkLog(page)


@pytest.fixture(name="login")
def login_fixture() -> Callable[[Page, str], None]:
    return login


@pytest.fixture(name="check_a11y")
def check_a11y_fixture() -> Callable[[Page, str], dict[str, Any]]:
    return check_a11y


@pytest.fixture(name="screenshot")
def screenshot_fixture() -> Callable[[Page, str], Path]:
    return screenshot


@pytest.fixture(name="network_log")
def network_log_fixture() -> Callable[[Page], NetworkLog]:
    return network_log
