"""The tile cache (geo.tiles.TileCache) on its own: bounded, least recently used out first, a viewer's
tiles gone after ten minutes, one build per tile at a time, nothing kept from territories that changed
meanwhile; and the territories' vintage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from psycopg import AsyncConnection

from geo import tiles

NO_CONNECTION: Any = None  # FakeTables answers instead


class FakeTables:
    """Stands for the database: a vintage, and tiles of `size` bytes built on request."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, size: int = 1000) -> None:
        self.vintage = "2026/1.1.0/a"
        self.size = size
        self.built: list[tuple[int, int, int]] = []
        self.gate: asyncio.Event | None = None
        monkeypatch.setattr(tiles, "vintage", self._vintage)
        monkeypatch.setattr(tiles, "build", self._build)

    async def _vintage(self, conn: Any) -> str:
        return self.vintage

    async def _build(self, conn: Any, z: int, x: int, y: int) -> bytes:
        self.built.append((z, x, y))
        if self.gate is not None:
            await self.gate.wait()
        return bytes([z, x % 256, y % 256]) * (self.size // 3)


async def test_the_least_recently_used_tiles_leave_first(monkeypatch: pytest.MonkeyPatch) -> None:
    tables = FakeTables(monkeypatch, size=999)
    entry = 999 + 200  # a tile and its bookkeeping
    cache = tiles.TileCache(max_bytes=3 * entry)
    for x in range(3):
        await cache.tile(NO_CONNECTION, 5, x, 0, viewer="a")
    assert cache.size == (3, 3 * entry)
    await cache.tile(NO_CONNECTION, 5, 0, 0, viewer="a")  # used again: now the most recent
    await cache.tile(NO_CONNECTION, 5, 3, 0, viewer="a")  # pushes out the least recently used: x=1
    assert cache.size == (3, 3 * entry)
    tables.built.clear()
    for x in (0, 2, 3, 1):
        await cache.tile(NO_CONNECTION, 5, x, 0, viewer="a")
    assert tables.built == [(5, 1, 0)]


async def test_a_tile_larger_than_the_cache_is_served_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeTables(monkeypatch, size=3000)
    cache = tiles.TileCache(max_bytes=1000)
    assert len(await cache.tile(NO_CONNECTION, 9, 1, 1, viewer="a")) == 3000
    assert cache.size == (0, 0)


async def test_tiles_above_zoom_7_are_kept_per_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    tables = FakeTables(monkeypatch)
    cache = tiles.TileCache()
    for viewer in ("a", "b", "a", "b"):
        await cache.tile(NO_CONNECTION, 7, 1, 1, viewer=viewer)
        await cache.tile(NO_CONNECTION, 8, 1, 1, viewer=viewer)
    assert tables.built == [(7, 1, 1), (8, 1, 1), (8, 1, 1)]


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_viewer_s_tiles_leave_the_cache_after_ten_minutes_and_the_shared_ones_stay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tile kept for one viewer (zoom 8 to 12) says where that person looked: it is gone from memory
    VIEWER_TILE_SECONDS after it was built, used meanwhile or not; the shared map of France is kept."""
    assert tiles.VIEWER_TILE_SECONDS == 600  # the console's lock time
    tables = FakeTables(monkeypatch, size=999)
    clock = Clock()
    cache = tiles.TileCache(clock=clock)
    await cache.tile(NO_CONNECTION, 7, 1, 1, viewer="a")  # shared
    for z in (8, 12):
        await cache.tile(NO_CONNECTION, z, 1, 1, viewer="a")
    clock.now += 300
    await cache.tile(NO_CONNECTION, 10, 1, 1, viewer="b")  # five minutes later
    assert cache.size == (4, 4 * 1199)

    clock.now += 299.5  # a's tiles are 599.5 s old: still there, and used again they keep their age
    await cache.tile(NO_CONNECTION, 8, 1, 1, viewer="a")
    assert cache.size[0] == 4
    assert tables.built == [(7, 1, 1), (8, 1, 1), (12, 1, 1), (10, 1, 1)]

    clock.now += 0.5  # ten minutes: a's tiles go at the cache's next use, whoever asks for what
    await cache.tile(NO_CONNECTION, 7, 1, 1, viewer="c")
    assert cache.size == (2, 2 * 1199)  # the shared z7 tile, and b's
    await cache.tile(NO_CONNECTION, 8, 1, 1, viewer="a")  # built again, for ten more minutes
    assert tables.built[4:] == [(8, 1, 1)]

    clock.now += 24 * 3600  # a day later, the viewers' tiles are all gone, the shared one is not
    await cache.tile(NO_CONNECTION, 7, 1, 1, viewer="d")
    assert cache.size == (1, 1199)
    assert tables.built[5:] == []


async def test_expired_and_evicted_tiles_keep_the_accounting_true(monkeypatch: pytest.MonkeyPatch) -> None:
    """A viewer's tile pushed out by the LRU before its time leaves no expiry behind, and one that
    expires is not counted twice: the cache's bytes stay the sum of what it holds."""
    FakeTables(monkeypatch, size=999)
    clock = Clock()
    cache = tiles.TileCache(max_bytes=2 * 1199, clock=clock)
    for x in range(3):  # the third pushes the first out
        await cache.tile(NO_CONNECTION, 9, x, 0, viewer="a")
        clock.now += 100
    assert cache.size == (2, 2 * 1199)
    clock.now += 600
    await cache.tile(NO_CONNECTION, 3, 0, 0, viewer="a")
    assert cache.size == (1, 1199)


async def test_concurrent_requests_for_a_cold_tile_build_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    tables = FakeTables(monkeypatch)
    tables.gate = asyncio.Event()
    cache = tiles.TileCache()
    waiting = [asyncio.create_task(cache.tile(NO_CONNECTION, 6, 2, 3, viewer=v)) for v in "abcd"]
    other = asyncio.create_task(cache.tile(NO_CONNECTION, 6, 2, 4, viewer="a"))
    await asyncio.sleep(0.01)
    assert sorted(tables.built) == [(6, 2, 3), (6, 2, 4)]
    tables.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(*waiting), timeout=5)
    assert len(set(answers)) == 1
    assert (await other) != answers[0]
    assert tables.built == [(6, 2, 3), (6, 2, 4)] or tables.built == [(6, 2, 4), (6, 2, 3)]


async def test_a_failed_build_is_not_kept_and_the_next_request_builds_again(monkeypatch: pytest.MonkeyPatch) -> None:
    tables = FakeTables(monkeypatch)
    cache = tiles.TileCache()

    async def failing(conn: Any, z: int, x: int, y: int) -> bytes:
        raise RuntimeError("statement timeout")

    monkeypatch.setattr(tiles, "build", failing)
    with pytest.raises(RuntimeError):
        await cache.tile(NO_CONNECTION, 4, 8, 5, viewer="a")
    monkeypatch.setattr(tiles, "build", tables._build)
    await cache.tile(NO_CONNECTION, 4, 8, 5, viewer="a")
    assert tables.built == [(4, 8, 5)]
    assert cache.size[0] == 1


async def test_new_territories_empty_the_cache_and_a_tile_of_the_old_ones_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tables = FakeTables(monkeypatch)
    cache = tiles.TileCache()
    await cache.tile(NO_CONNECTION, 3, 4, 2, viewer="a")
    tables.vintage = "2027/cog-2027/b"
    await cache.tile(NO_CONNECTION, 3, 4, 3, viewer="a")
    assert cache.size[0] == 1  # the 2026 tile is gone
    # A build that started before the territories changed ends after: its tile is served, not kept.
    gate = tables.gate = asyncio.Event()
    slow = asyncio.create_task(cache.tile(NO_CONNECTION, 3, 3, 3, viewer="a"))
    await asyncio.sleep(0.01)
    tables.gate = None  # the builds after this one are quick
    tables.vintage = "2028/cog-2028/c"
    await cache.tile(NO_CONNECTION, 3, 4, 3, viewer="a")
    gate.set()
    await asyncio.wait_for(slow, timeout=5)
    assert cache.size[0] == 1


async def test_the_vintage_changes_with_every_load_of_the_territories(owner: AsyncConnection) -> None:
    before = await tiles.vintage(owner)
    assert before.startswith("2026/")
    await owner.execute(
        "UPDATE reference_dataset SET loaded_at = loaded_at + interval '1 second' WHERE name = 'territories'"
    )
    assert await tiles.vintage(owner) not in ("", before)
    await owner.execute("DELETE FROM reference_dataset WHERE name = 'territories'")
    assert await tiles.vintage(owner) == ""


@pytest.mark.parametrize(("z", "x", "y"), [(13, 0, 0), (-1, 0, 0), (2, 4, 0), (2, 0, 4), (0, -1, 0)])
async def test_no_tile_is_built_outside_the_pyramid(owner: AsyncConnection, z: int, x: int, y: int) -> None:
    with pytest.raises(ValueError, match="no tile"):
        await tiles.build(owner, z, x, y)
