"""Map tiles of the territories (GET /v1/tiles/{z}/{x}/{y}.mvt): decoded with mapbox-vector-tile and
checked against where places are (tile numbers computed here with the slippy-map formulas, not by the
code under test); the zoom rules, empty tiles at sea, refusals, caching, and the logs that never say
which tile was asked for."""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import mapbox_vector_tile
import psycopg
import pytest
import structlog
from prometheus_client import REGISTRY, generate_latest
from shapely.geometry import Point, shape

from api import errors, middleware
from api.logs import configure_logging
from api.settings import Settings
from geo import tiles

MVT = "application/vnd.mapbox-vector-tile"
NOTRE_DAME = (2.3499, 48.8530)
BOULOGNE_TOWN_HALL = (2.2399, 48.8353)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, float, float]:
    """(x, y) of the Web Mercator tile holding the point at zoom z (XYZ, y from the north), and the
    point's place inside it in tile units (0 to 4096, y down)."""
    n = 2**z
    fx = (lon + 180) / 360 * n
    fy = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return int(fx), int(fy), (fx - int(fx)) * 4096, (fy - int(fy)) * 4096


def decode(body: bytes) -> dict[str, Any]:
    return mapbox_vector_tile.decode(body, default_options={"y_coord_down": True}) if body else {}


def codes(layer: dict[str, Any]) -> list[str]:
    return [feature["properties"]["code"] for feature in layer["features"]]


def feature(layer: dict[str, Any], code: str) -> dict[str, Any]:
    (found,) = [f for f in layer["features"] if f["properties"]["code"] == code]
    return found


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """Every tile built from the tables, in order, with the cache emptied first."""
    built: list[tuple[int, int, int]] = []
    original = tiles.build

    async def counting(conn: Any, z: int, x: int, y: int) -> bytes:
        built.append((z, x, y))
        return await original(conn, z, x, y)

    tiles.CACHE.clear()
    monkeypatch.setattr(tiles, "build", counting)
    return built


async def _tile(client: httpx.AsyncClient, headers: dict[str, str], z: int, x: int, y: int) -> httpx.Response:
    return await client.get(f"/v1/tiles/{z}/{x}/{y}.mvt", headers=headers)


async def test_the_tile_over_paris_at_zoom_10_has_its_commune_departement_and_region(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    x, y, px, py = tile_of(*NOTRE_DAME, 10)
    assert (x, y) == (518, 352)
    response = await _tile(client, specialist, 10, x, y)
    assert response.status_code == 200
    assert response.headers["content-type"] == MVT
    assert response.headers["cache-control"] == "no-store"
    layers = decode(response.content)
    assert set(layers) == {"regions", "departements", "communes"}
    assert all(layer["extent"] == 4096 for layer in layers.values())
    assert [f["properties"] for f in layers["regions"]["features"]] == [{"code": "11", "name": "Île-de-France"}]
    assert codes(layers["departements"]) == ["75", "78", "91", "92", "93", "94", "95"]
    assert feature(layers["departements"], "75")["properties"] == {"code": "75", "name": "Paris"}
    paris = feature(layers["communes"], "75056")
    assert paris["properties"] == {"code": "75056", "name": "Paris"}
    assert codes(layers["communes"]) == sorted(codes(layers["communes"]))
    assert len(codes(layers["communes"])) > 100
    # Georeferenced: Notre-Dame is in Paris, Boulogne's town hall in Boulogne and not in Paris.
    assert shape(paris["geometry"]).contains(Point(px, py))
    assert shape(feature(layers["departements"], "75")["geometry"]).contains(Point(px, py))
    assert shape(layers["regions"]["features"][0]["geometry"]).contains(Point(px, py))
    bx, by, bpx, bpy = tile_of(*BOULOGNE_TOWN_HALL, 10)
    assert (bx, by) == (x, y)
    assert shape(feature(layers["communes"], "92012")["geometry"]).contains(Point(bpx, bpy))
    assert not shape(paris["geometry"]).contains(Point(bpx, bpy))
    # Properties are the code and name, nothing else, in every layer.
    assert {key for layer in layers.values() for f in layer["features"] for key in f["properties"]} == {"code", "name"}


async def test_communes_appear_from_zoom_8(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    for z in (5, 7):
        x, y, px, py = tile_of(*NOTRE_DAME, z)
        layers = decode((await _tile(client, specialist, z, x, y)).content)
        assert set(layers) == {"regions", "departements"}, z
        assert shape(feature(layers["regions"], "11")["geometry"]).contains(Point(px, py))
        assert shape(feature(layers["departements"], "75")["geometry"]).contains(Point(px, py))
    x, y, px, py = tile_of(*NOTRE_DAME, 8)
    layers = decode((await _tile(client, specialist, 8, x, y)).content)
    assert set(layers) == {"regions", "departements", "communes"}
    assert shape(feature(layers["communes"], "75056")["geometry"]).contains(Point(px, py))


async def test_the_world_tile_holds_every_region_and_departement(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    layers = decode((await _tile(client, specialist, 0, 0, 0)).content)
    assert set(layers) == {"regions", "departements"}
    assert len(codes(layers["regions"])) == 18
    assert len(codes(layers["departements"])) == 101
    assert {"971", "972", "973", "974", "976", "2A", "2B"} <= set(codes(layers["departements"]))


async def test_a_tile_at_the_deepest_zoom_is_small_and_unsimplified(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    x, y, px, py = tile_of(*NOTRE_DAME, 12)
    response = await _tile(client, specialist, 12, x, y)
    layers = decode(response.content)
    assert shape(feature(layers["communes"], "75056")["geometry"]).contains(Point(px, py))
    assert len(response.content) < 20_000


@pytest.mark.parametrize(("lon", "lat", "z"), [(-30.0, 40.0, 8), (-150.0, 80.0, 6), (0.0, 0.0, 12)])
async def test_a_tile_at_sea_is_empty(
    client: httpx.AsyncClient, specialist: dict[str, str], lon: float, lat: float, z: int
) -> None:
    x, y, _, _ = tile_of(lon, lat, z)
    response = await _tile(client, specialist, z, x, y)
    assert response.status_code == 200
    assert response.headers["content-type"] == MVT
    assert response.headers["content-length"] == "0"
    assert response.content == b""


async def test_tiles_need_a_token(client: httpx.AsyncClient, builds: list[tuple[int, int, int]]) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = await client.get("/v1/tiles/10/518/352.mvt", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith('Bearer realm="maillage"')
        assert response.json()["code"] == "unauthenticated"
    assert builds == []


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("13/0/0", "z"),
        ("-1/0/0", "z"),
        ("a/0/0", "z"),
        ("1.5/0/0", "z"),
        ("0/1/0", "x"),
        ("3/8/0", "x"),
        ("10/1024/352", "x"),
        ("12/4096/0", "x"),
        ("3/0/8", "y"),
        ("10/518/-1", "y"),
        ("10/518/zz", "y"),
    ],
)
async def test_a_tile_that_does_not_exist_is_a_422_naming_the_coordinate(
    client: httpx.AsyncClient, specialist: dict[str, str], builds: list[tuple[int, int, int]], path: str, name: str
) -> None:
    response = await client.get(f"/v1/tiles/{path}.mvt", headers=specialist)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid_request"
    assert [(error["in"], error["name"]) for error in problem["errors"]] == [("path", name)]
    assert builds == []


async def test_other_formats_are_not_served(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    for path in ("/v1/tiles/10/518/352.pbf", "/v1/tiles/10/518/352", "/v1/tiles/10/518.mvt"):
        response = await client.get(path, headers=specialist)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"


async def test_every_role_reads_tiles(client: httpx.AsyncClient, auth) -> None:  # type: ignore[no-untyped-def]
    bodies = set()
    for role in ("specialist", "partner", "department", "admin"):
        response = await client.get("/v1/tiles/10/518/352.mvt", headers=auth(role))
        assert response.status_code == 200, role
        bodies.add(response.content)
    assert len(bodies) == 1


async def test_tiles_are_built_once_per_caller_above_zoom_7_and_once_for_all_below(
    client: httpx.AsyncClient, auth, builds: list[tuple[int, int, int]]
) -> None:  # type: ignore[no-untyped-def]
    one, other = auth("specialist", subject="one"), auth("specialist", subject="other")
    first = await _tile(client, one, 10, 518, 352)
    again = await _tile(client, one, 10, 518, 352)
    assert builds == [(10, 518, 352)]
    assert again.content == first.content
    # Another caller's cold tile is built anew: no one learns by timing what someone else looked at.
    assert (await _tile(client, other, 10, 518, 352)).content == first.content
    assert builds == [(10, 518, 352), (10, 518, 352)]
    # The low zooms show all of France to everyone: shared.
    for headers in (one, other, auth("admin")):
        assert (await _tile(client, headers, 7, 64, 44)).status_code == 200
        assert (await _tile(client, headers, 5, 16, 11)).status_code == 200
    assert builds == [(10, 518, 352), (10, 518, 352), (7, 64, 44), (5, 16, 11)]


async def test_new_territories_drop_the_cached_tiles(
    client: httpx.AsyncClient,
    specialist: dict[str, str],
    builds: list[tuple[int, int, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _tile(client, specialist, 5, 16, 11)
    await _tile(client, specialist, 5, 16, 11)
    assert len(builds) == 1

    async def refreshed(conn: Any) -> str:
        return "2027/cog-2027/2027-01-15 00:00:00+00"

    monkeypatch.setattr(tiles, "vintage", refreshed)
    await _tile(client, specialist, 5, 16, 11)
    assert len(builds) == 2


# --- the logs never say which tile ------------------------------------------------------------------


@pytest.fixture
def log_lines(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[io.StringIO]:
    """What the API's loggers write, as JSON lines, while the test runs (fresh loggers: structlog keeps
    a logger's configuration from its first use)."""
    stream = io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", stream)
        configure_logging(json=True)
        patch.setattr(middleware, "access_log", structlog.get_logger("maillage.access"))
        patch.setattr(errors, "log", structlog.get_logger())
        yield stream
    configure_logging(json=settings.log_json)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_the_access_log_records_the_route_template_of_a_tile_never_its_path(
    client: httpx.AsyncClient, specialist: dict[str, str], log_lines: io.StringIO
) -> None:
    await client.get("/v1/tiles/10/518/352.mvt", headers=specialist)
    await client.get("/v1/tiles/11/1037/705.mvt")  # refused: 401
    await client.get("/v1/tiles/13/4149/2818.mvt", headers=specialist)  # 422
    await client.get("/v1/tiles/10/518/352.png", headers=specialist)  # no such route
    await client.get("/v1/departements/93", headers=specialist)  # other paths are logged as they are
    lines = [line for line in _lines(log_lines) if line["event"] == "request"]
    assert [(line["path"], line["route"], line["status"]) for line in lines] == [
        ("/v1/tiles/{z}/{x}/{y}.mvt", "/v1/tiles/{z}/{x}/{y}.mvt", 200),
        ("/v1/tiles/{z}/{x}/{y}.mvt", "/v1/tiles/{z}/{x}/{y}.mvt", 401),
        ("/v1/tiles/{z}/{x}/{y}.mvt", "/v1/tiles/{z}/{x}/{y}.mvt", 422),
        ("/v1/tiles/…", None, 404),
        ("/v1/departements/93", "/v1/departements/{code}", 200),
    ]
    written = log_lines.getvalue()
    for asked in ("518/352", "1037/705", "4149/2818"):  # (a bare number could be in a request id)
        assert asked not in written


async def test_a_tile_that_fails_is_logged_without_its_path(
    client: httpx.AsyncClient,
    specialist: dict[str, str],
    log_lines: io.StringIO,
    builds: list[tuple[int, int, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def timed_out(conn: Any, z: int, x: int, y: int) -> bytes:
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

    monkeypatch.setattr(tiles, "build", timed_out)
    response = await client.get("/v1/tiles/10/518/352.mvt", headers=specialist)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    (warning,) = [line for line in _lines(log_lines) if line["event"] == "database_unavailable"]
    assert warning["path"] == "/v1/tiles/{z}/{x}/{y}.mvt"
    assert "518/352" not in log_lines.getvalue()
    # Nothing was kept: the next request builds the tile.
    assert tiles.CACHE.size == (0, 0)


async def test_metrics_count_tiles_by_their_route_template(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    labels = {"method": "GET", "route": "/v1/tiles/{z}/{x}/{y}.mvt", "status": "200"}
    before = REGISTRY.get_sample_value("maillage_http_requests_total", labels) or 0.0
    await client.get("/v1/tiles/10/518/352.mvt", headers=specialist)
    await client.get("/v1/tiles/9/259/176.mvt", headers=specialist)
    assert REGISTRY.get_sample_value("maillage_http_requests_total", labels) == before + 2
    exposed = generate_latest(REGISTRY).decode()
    assert "518/352" not in exposed
    assert "259/176" not in exposed
