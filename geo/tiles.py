"""Map tiles of the territories: Mapbox Vector Tiles built by PostGIS (ST_AsMVT), so that the people's
console draws its maps without a third-party tile server. The tiles a browser fetches say where
someone is looking — where a child is being searched for — and no one outside Maillage may learn it.

A tile is addressed as z/x/y in the XYZ scheme of Web Mercator (EPSG:3857, y counted from the north,
as ST_TileEnvelope and MapLibre count it). It carries up to three layers whose features have two
properties, `code` (INSEE) and `name`:

- `regions`, at every zoom: a région's boundary is the union of its départements' (the one definition,
  geo.territories.region_boundary), dissolved from the départements the tile reaches only;
- `departements`, at every zoom;
- `communes`, from COMMUNES_MIN_ZOOM on: below it a commune is a pixel or two across, and a tile would
  hold thousands of them (the z8 tile north of Paris holds ~1,100: ~100 KB).

A layer with no feature in the tile is left out, and a tile with none (at sea, abroad) is empty: zero
bytes, a valid tile without layers, which map clients draw as nothing.

Geometry: features are clipped to the tile plus a BUFFER of its EXTENT-unit grid (so that outlines
join across tiles) and quantised to that grid by ST_AsMVTGeom. Below MAX_ZOOM they are first simplified
to half a pixel of a 512-pixel tile (the size MapLibre draws vector tiles at): what cannot be seen is
not sent, and a z5 tile of France weighs ~30 KB instead of ~155 KB. At MAX_ZOOM (12) a tile is ~10 km
across and a grid unit ~2.4 m, finer than the source's boundaries: nothing is simplified, and map
clients overzoom those tiles beyond. Features are in code order, so a tile's bytes depend on the
territories only.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from psycopg import AsyncConnection

from .territories import region_boundary

MAX_ZOOM = 12
COMMUNES_MIN_ZOOM = 8
EXTENT = 4096  # grid units across a tile (the MVT default)
BUFFER = 64  # grid units kept beyond each edge

# The whole Web Mercator square, in metres (the span of zoom 0's one tile).
_WORLD_M = 2 * 20037508.342789244


def simplification(z: int) -> float:
    """The tolerance, in Web Mercator metres, of the boundaries of a zoom-`z` tile: half a pixel of a
    512-pixel tile below MAX_ZOOM, none at MAX_ZOOM (overzoomed by clients)."""
    return 0.0 if z >= MAX_ZOOM else _WORLD_M / 2**z / 1024


def _layer(name: str, rows: str) -> str:
    """One layer: `rows` yields (code, name, geom) in tile coordinates, NULL where clipped away. OFFSET 0
    keeps the planner from pulling `rows` up into the filter, which would compute every geometry twice."""
    return f"""coalesce((SELECT ST_AsMVT(f, '{name}', {EXTENT}, 'geom') FROM (
                  SELECT code, name, geom FROM ({rows} OFFSET 0) l WHERE geom IS NOT NULL ORDER BY code) f),
                  ''::bytea)"""


def _in_tile(boundary: str) -> str:
    """A boundary (SRID 4326) in the tile's coordinates: projected, simplified, clipped, quantised.
    Douglas-Peucker keeping what would collapse (an islet stays a dot): ~8 times as fast as
    ST_SimplifyPreserveTopology, and ST_AsMVTGeom makes its result valid as it clips it. A tolerance
    of 0 (MAX_ZOOM) drops only points that lie on a straight line."""
    simplified = f"ST_Simplify(ST_Transform({boundary}, 3857), t.tolerance, true)"
    return f"ST_AsMVTGeom({simplified}, t.envelope, {EXTENT}, {BUFFER}, true)"


_REGIONS = f"SELECT r.code, r.name, {_in_tile(region_boundary('t.reach'))} AS geom FROM t, region r"
_DEPARTEMENTS = (
    f"SELECT d.code, d.name, {_in_tile('d.boundary')} AS geom FROM t, departement d WHERE d.boundary && t.reach"
)
_COMMUNES = (
    f"SELECT c.code, c.name, {_in_tile('c.boundary')} AS geom FROM t, commune c"
    f" WHERE t.z >= {COMMUNES_MIN_ZOOM} AND c.boundary && t.reach"
)

# `t`: the tile's envelope (3857), what it reaches with its buffer (4326, for the GiST indexes on the
# boundaries), its simplification tolerance and zoom. Each layer reads it.
TILE = f"""
WITH t AS (
    SELECT ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int) AS envelope,
           ST_Transform(ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int,
                                        margin => {BUFFER / EXTENT}::float8), 4326) AS reach,
           %(tolerance)s::float8 AS tolerance,
           %(z)s::int AS z
)
SELECT {_layer("regions", _REGIONS)} || {_layer("departements", _DEPARTEMENTS)} || {_layer("communes", _COMMUNES)}
"""


def valid_tile(z: int, x: int, y: int) -> bool:
    return 0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z


async def build(conn: AsyncConnection, z: int, x: int, y: int) -> bytes:
    """The tile's bytes (empty when it holds no territory), from the territory tables."""
    if not valid_tile(z, x, y):
        raise ValueError(f"no tile {z}/{x}/{y}: zoom 0 to {MAX_ZOOM}, x and y 0 to 2^z - 1")
    row = await (await conn.execute(TILE, {"z": z, "x": x, "y": y, "tolerance": simplification(z)})).fetchone()
    assert row is not None, "the layers' aggregates always answer one row"
    return bytes(row[0])


async def vintage(conn: AsyncConnection) -> str:
    """Which territories the tables hold: the loaded release and when it was loaded. Every load and
    `maillage territories refresh` rewrites this row in the transaction that changes the territories."""
    row = await (
        await conn.execute(
            """SELECT reference_year::text || '/' || version || '/' || loaded_at::text FROM reference_dataset
                WHERE name = 'territories'"""
        )
    ).fetchone()
    return str(row[0]) if row else ""


# --- the cache --------------------------------------------------------------------------------------

# Tiles up to this zoom are ≥ ~200 km across in metropolitan France (a région, several départements):
# everyone's first map of France, and the dearest to build (dissolving régions: 0.2–0.45 s). Shared.
SHARED_MAX_ZOOM = 7
# What the cache may hold per process, tiles and their bookkeeping.
CACHE_BYTES = 64 * 2**20
# How long a tile kept for one viewer (above SHARED_MAX_ZOOM) lives, from when it was built: such an
# entry says where that person looked, so the cache must not keep it longer than that look is useful.
# Ten minutes is the console's lock time (api/settings.py, console_lock_minutes' default): past it an
# idle console is locked. A viewer still looking then rebuilds the tile (10–65 ms, bench/tiles.py).
VIEWER_TILE_SECONDS = 10 * 60
_ENTRY_OVERHEAD = 200  # bytes of dict entry, key and bytes object per tile, roughly


@dataclass(frozen=True)
class _Key:
    vintage: str
    z: int
    x: int
    y: int
    viewer: str  # "" for a shared tile


class TileCache:
    """Built tiles, kept in this process's memory: a bounded LRU (CACHE_BYTES), keyed by the territories'
    vintage, the tile, and — above SHARED_MAX_ZOOM — the caller.

    Why in memory and not a table in PostgreSQL, though a table would be shared by every worker and
    survive restarts: a cache filled on first request records which tiles were asked for, so a table
    would be a durable log of where people looked (its rows, their order, the WAL, backups, replicas)
    — the very thing `Cache-Control: no-store` keeps off the browser's disk and the access log never
    writes. Memory holds it only while it is useful, and nowhere else. The price: each worker builds
    its own tiles, again after a restart (bench/tiles.py, a quiet machine: a cold tile costs 10–25 ms from
    zoom 10, ~65 ms at zoom 8, 0.2–0.45 s at the low zooms, where régions are dissolved; a warm one ~2 ms).

    Why keyed by the caller above SHARED_MAX_ZOOM: a shared cache answers a warm tile in a millisecond
    and a cold one in tens or hundreds, so any caller could learn by timing which places someone
    else looked at lately (DESIGN §3: no timing class may depend on what a caller may not see, and
    caches are keyed by the whole principal). The low zooms are the same map of France for everyone
    and reveal nothing: they are shared, which is where sharing pays.

    Why a viewer's tiles expire (VIEWER_TILE_SECONDS after they were built) when the shared ones do
    not: held until the LRU pushed them out, on a quiet server for days, they would be that record of
    who looked where, in memory. Expired ones are dropped from the cache (not merely ignored) on its
    next use; the clock is injectable (`clock`, seconds, monotonic) so that tests need not wait.

    The vintage (`vintage()`) is read per request: when the territories change, every tile built from
    the old ones is dropped. One build at a time per tile: concurrent requests for it wait for the
    first one's result instead of building it again (per event loop: an asyncio lock belongs to one).
    """

    def __init__(
        self,
        max_bytes: int = CACHE_BYTES,
        *,
        viewer_ttl: float = VIEWER_TILE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.viewer_ttl = viewer_ttl
        self._clock = clock
        self._tiles: OrderedDict[_Key, bytes] = OrderedDict()
        # The viewers' tiles, in the order they expire (the order they were kept: one lifetime for all).
        self._expiry: OrderedDict[_Key, float] = OrderedDict()
        self._bytes = 0
        self._vintage: str | None = None
        self._building: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, tuple[asyncio.Lock, int]]]
        self._building = weakref.WeakKeyDictionary()

    def clear(self) -> None:
        self._tiles.clear()
        self._expiry.clear()
        self._bytes = 0

    @property
    def size(self) -> tuple[int, int]:
        """(tiles, bytes accounted) held now."""
        return len(self._tiles), self._bytes

    async def tile(self, conn: AsyncConnection, z: int, x: int, y: int, *, viewer: str) -> bytes:
        """The tile, from the cache or built (and kept). `viewer` is the caller's whole principal key."""
        current = await vintage(conn)
        if current != self._vintage:
            self.clear()
            self._vintage = current
        key = _Key(current, z, x, y, "" if z <= SHARED_MAX_ZOOM else viewer)
        found = self._get(key)
        if found is not None:
            return found
        return await self._single_flight(key, lambda: build(conn, z, x, y))

    def _get(self, key: _Key) -> bytes | None:
        self._expire()
        found = self._tiles.get(key)
        if found is not None:
            self._tiles.move_to_end(key)
        return found

    def _put(self, key: _Key, tile: bytes) -> None:
        cost = len(tile) + _ENTRY_OVERHEAD
        if key.vintage != self._vintage or cost > self.max_bytes:
            return  # built from territories that changed meanwhile, or larger than the whole cache
        self._drop(key)
        self._tiles[key] = tile
        self._bytes += cost
        if key.viewer:
            self._expiry[key] = self._clock() + self.viewer_ttl
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._tiles)))

    def _drop(self, key: _Key) -> None:
        tile = self._tiles.pop(key, None)
        if tile is not None:
            self._bytes -= len(tile) + _ENTRY_OVERHEAD
        self._expiry.pop(key, None)

    def _expire(self) -> None:
        """Drop the viewers' tiles whose time is up (the oldest first: they expire in that order)."""
        now = self._clock()
        while self._expiry:
            key, expires = next(iter(self._expiry.items()))
            if expires > now:
                return
            self._drop(key)

    async def _single_flight(self, key: _Key, make: Callable[[], Awaitable[bytes]]) -> bytes:
        building = self._building.setdefault(asyncio.get_running_loop(), {})
        lock, waiting = building.get(key) or (asyncio.Lock(), 0)
        building[key] = (lock, waiting + 1)
        try:
            async with lock:
                found = self._get(key)
                if found is None:
                    found = await make()
                    self._put(key, found)
                return found
        finally:
            lock, waiting = building[key]
            if waiting == 1:
                del building[key]
            else:
                building[key] = (lock, waiting - 1)


CACHE = TileCache()
