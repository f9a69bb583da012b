"""Links never reflect the Host header: `next` and `Location` start with the configured public base URL,
and a request for a host that is not this API's is a 400 `unknown_host` (DESIGN §3)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from api.middleware import PublicOrigin
from api.settings import Settings

BASE = "http://maillage.test"  # tests/conftest.py: the test client's base_url is the configured one


@pytest.mark.parametrize(
    "host", ["evil.example", "maillage.test.evil.example", "maillage.test:8080", "", "a b", "x@maillage.test"]
)
async def test_a_request_for_another_host_is_refused(
    client: httpx.AsyncClient, specialist: dict[str, str], host: str
) -> None:
    for headers in ({**specialist, "host": host}, {"host": host}):
        response = await client.get("/v1/specialisms", headers=headers)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unknown_host"
        assert "x-request-id" in response.headers


@pytest.mark.parametrize("host", ["maillage.test", "MAILLAGE.TEST", "Maillage.Test:80", "maillage.test:80"])
async def test_the_own_host_in_any_case_with_or_without_its_default_port(
    client: httpx.AsyncClient, specialist: dict[str, str], host: str
) -> None:
    assert (await client.get("/v1/specialisms", headers={**specialist, "host": host})).status_code == 200


async def test_health_probes_answer_any_host(client: httpx.AsyncClient) -> None:
    """Orchestrators probe a process by its address; these answers carry no link and no data."""
    assert (await client.get("/healthz", headers={"host": "10.1.2.3:8000"})).status_code == 200
    assert (await client.get("/.well-known/jwks.json", headers={"host": "10.1.2.3:8000"})).status_code == 400


async def test_next_links_start_with_the_configured_base_url(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    for host in ("MAILLAGE.TEST:80", "maillage.test"):
        headers = {**specialist, "host": host, "x-forwarded-host": "evil.example", "x-forwarded-proto": "https"}
        page = (await client.get("/v1/departements", params={"limit": 2}, headers=headers)).json()
        href = page["links"][0]["href"]
        assert href.startswith(f"{BASE}/v1/departements?limit=2&cursor="), href
        following = (await client.get(href, headers=headers)).json()
        assert [f["id"] for f in following["features"]] == ["03", "04"]
        assert following["links"][0]["href"].startswith(f"{BASE}/v1/departements?limit=2&cursor=")
        organisations = (await client.get("/v1/organisations", params={"limit": 1}, headers=headers)).json()
        assert organisations["links"][0]["href"].startswith(f"{BASE}/v1/organisations?limit=1&cursor=")


async def test_location_headers_start_with_the_configured_base_url(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
) -> None:
    headers = {**auth("admin"), "host": "Maillage.TEST:80", "x-forwarded-host": "evil.example"}
    created = await client.post(
        "/v1/organisations", headers=headers, json={"name": "Asso des liens", "kind": "association"}
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{BASE}/v1/organisations/{created.json()['id']}"


# --- settings and the middleware on their own ---------------------------------------------------


def test_the_base_url_defaults_to_the_served_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILLAGE_PUBLIC_BASE_URL", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    assert Settings().public_base_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("PORT", "9000")  # PORT=9000 make run
    assert Settings().public_base_url == "http://127.0.0.1:9000"
    assert Settings(host="0.0.0.0").public_base_url == "http://127.0.0.1:9000"  # noqa: S104
    monkeypatch.setenv("MAILLAGE_PUBLIC_BASE_URL", "HTTPS://Maillage.Example.FR/")
    assert Settings().public_base_url == "https://maillage.example.fr"


@pytest.mark.parametrize(
    "url",
    [
        "maillage.example.fr",
        "ftp://maillage.example.fr",
        "https://x/api",
        "https://u:p@x",
        "https://x?a=1",
        "https://x:99999",
    ],
)
def test_a_base_url_that_is_not_scheme_host_port_is_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(public_base_url=url)


async def _status(middleware: PublicOrigin, host: str | None) -> int:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware.app = app
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"host", host.encode())] if host is not None else []
    await middleware({"type": "http", "method": "GET", "path": "/v1/x", "headers": headers}, receive, send)
    return int(sent[0]["status"])


async def test_loopback_aliases_and_extra_hosts() -> None:
    local = PublicOrigin(None, base_url="http://127.0.0.1:8000")  # type: ignore[arg-type]
    assert [await _status(local, h) for h in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000")] == [204] * 3
    refused = ("127.0.0.1", "localhost:9000", "evil:8000", "localhost:8000\n", "localhost:8000:1", None)
    assert [await _status(local, h) for h in refused] == [400] * 6
    proxied = PublicOrigin(
        None,  # type: ignore[arg-type]
        base_url="https://maillage.example.fr",
        allowed_hosts=("api.internal", "probe.internal:8443"),
    )
    accepted = ("maillage.example.fr", "maillage.example.fr:443", "api.internal:8000", "probe.internal:8443")
    assert [await _status(proxied, h) for h in accepted] == [204] * 4
    refused = ("maillage.example.fr:80", "localhost:443", "probe.internal", "127.0.0.1")
    assert [await _status(proxied, h) for h in refused] == [400] * 4
