"""Statistics: scope (a department gets its own figures only), small-cell protection, differencing,
and figures checked against a brute-force recomputation on a generated dataset."""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from psycopg import AsyncConnection

URL = "/v1/stats/handoffs"
PERIOD = {"from": "2025-01", "to": "2025-03"}


@dataclass
class Row:
    handoff: uuid.UUID
    case: uuid.UUID
    collectivite: str
    month: str
    kind: str
    status: str
    age: int
    receiver_kind: str
    decline_reason: str | None
    created_at: datetime
    acknowledged_at: datetime | None
    accepted_at: datetime | None


async def _insert(
    reader: AsyncConnection,
    *,
    collectivite: str,
    month: str,
    kind: str,
    cases: int,
    status: str = "accepted",
    age: int = 15,
    receiver: str = "crip",
    decline_reason: str | None = None,
    ack_hours: float = 2.0,
    per_case: int = 1,
    rows: list[Row] | None = None,
    created: datetime | None = None,
) -> list[uuid.UUID]:
    """`cases` cases with `per_case` handoffs each, created mid-`month` (or at `created`), in `collectivite`."""
    receiver_id = (
        await (
            await reader.execute("SELECT id FROM organisation WHERE kind = %s ORDER BY seed_key LIMIT 1", (receiver,))
        ).fetchone()
    )[0]
    sender = (await (await reader.execute("SELECT id FROM organisation WHERE seed_key = 'hotline:119'")).fetchone())[0]
    created = created or datetime.fromisoformat(f"{month}-15T10:00:00+00:00")
    made = []
    for _ in range(cases):
        case_id = uuid.uuid4()
        await reader.execute(
            """INSERT INTO case_record (id, reference, collectivite_code, age, intake_channel, caller,
                                        known_to_child_welfare, created_by, opened_at)
               VALUES (%s, %s, %s, %s, 'phone', 'parent', 'unknown', 't', %s)""",
            (case_id, uuid.uuid4().hex[:9], collectivite, age, created),
        )
        for _ in range(per_case):
            handoff_id = uuid.uuid4()
            acknowledged = created + timedelta(hours=ack_hours) if status != "sent" else None
            accepted = created + timedelta(hours=ack_hours * 2) if status in ("accepted", "completed") else None
            await reader.execute(
                """INSERT INTO handoff (id, case_id, collectivite_code, sender_organisation_id,
                                        receiver_organisation_id, kind, beneficiary, urgency, legal_basis, status,
                                        acknowledge_by,
                                        acknowledged_at, accepted_at, decline_reason, created_at, created_by)
                   VALUES (%s, %s, %s, %s, %s, %s, 'minor', 'within_24h', 'child_protection_duty', %s, %s, %s, %s,
                           %s, %s, 't')""",
                (
                    handoff_id,
                    case_id,
                    collectivite,
                    sender,
                    receiver_id,
                    kind,
                    status,
                    created + timedelta(hours=24),
                    acknowledged,
                    accepted,
                    decline_reason,
                    created,
                ),
            )
            made.append(handoff_id)
            if rows is not None:
                rows.append(
                    Row(
                        handoff_id,
                        case_id,
                        collectivite,
                        month,
                        kind,
                        status,
                        age,
                        receiver,
                        decline_reason,
                        created,
                        acknowledged,
                        accepted,
                    )
                )
    return made


async def _stats(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get(URL, params={**PERIOD, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


class TestScope:
    async def test_a_department_gets_its_own_territory_only(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=12)
        await _insert(reader, collectivite="75C", month="2025-01", kind="orientation", cases=30)
        seine_saint_denis = auth("department", collectivite="93D")
        mine = await _stats(client, seine_saint_denis, group_by="collectivite")
        assert [c["collectivite"] for c in mine["cells"]] == ["93D"]
        assert mine["total"]["cases"] == 12
        assert mine["filters"]["collectivite"] == ["93D"]
        for params in ({"collectivite": "75C"}, {"collectivite": "75C", "group_by": "month"}):
            response = await client.get(URL, params={**PERIOD, **params}, headers=seine_saint_denis)
            assert response.status_code == 404
            assert "30" not in response.text
        for params in (
            {"collectivite": "75c"},
            {"collectivite": " 75C"},
            {"collectivite": "75C,93D"},
            {"collectivite": "*"},
        ):
            assert (await client.get(URL, params={**PERIOD, **params}, headers=seine_saint_denis)).status_code == 422
        repeated = await client.get(f"{URL}?collectivite=93D&collectivite=75C", headers=seine_saint_denis)
        assert repeated.status_code == 422
        as_csv = await client.get(
            URL, params={**PERIOD, "collectivite": "75C"}, headers={**seine_saint_denis, "Accept": "text/csv"}
        )
        assert as_csv.status_code == 404
        for path in ("/v1/stats/needs", "/v1/stats/coverage"):
            assert (
                await client.get(path, params={"collectivite": "75C"}, headers=seine_saint_denis)
            ).status_code == 404

    async def test_the_119_sees_the_country_with_a_collectivite_dimension(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=12)
        await _insert(reader, collectivite="75C", month="2025-01", kind="orientation", cases=30)
        body = await _stats(client, auth("specialist"), group_by="collectivite")
        assert {c["collectivite"]: c["cases"] for c in body["cells"]} == {"75C": 30, "93D": 12}
        assert body["total"]["cases"] == 42

    async def test_partners_get_no_statistics(self, client: httpx.AsyncClient, auth) -> None:  # type: ignore[no-untyped-def]
        for path in (URL, "/v1/stats/needs", "/v1/stats/coverage"):
            assert (await client.get(path, headers=auth("partner"))).status_code == 403


class TestSmallCells:
    async def test_cells_under_k_are_suppressed_whole(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=15)
        await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=4)  # a small atom
        await _insert(reader, collectivite="93D", month="2025-03", kind="orientation", cases=11)
        body = await _stats(client, auth("department", collectivite="93D"), group_by="month")
        cells = {c["month"]: c for c in body["cells"]}
        assert (cells["2025-01"]["cases"], cells["2025-03"]["cases"]) == (15, 11)
        # Its atom is left out of every figure, and its cell says so without a number.
        assert cells["2025-02"]["suppressed"] is True
        assert cells["2025-02"]["cases"] is cells["2025-02"]["handoffs"] is None
        assert body["total"]["cases"] == 26
        assert body["k"] == 10
        assert "fewer than k" in body["suppression"]

    async def test_two_overlapping_queries_cannot_reveal_a_suppressed_cell(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        headers = auth("department", collectivite="93D")
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=15)
        await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=4)
        await _insert(reader, collectivite="93D", month="2025-03", kind="orientation", cases=11)
        await _insert(reader, collectivite="93D", month="2025-02", kind="information_preoccupante", cases=20)
        # Periods: Jan–Mar minus Jan and minus Mar leaves nothing of February's orientations.
        whole = (await _stats(client, headers, kind="orientation"))["total"]["cases"]
        jan = (await _stats(client, headers, kind="orientation", **{"from": "2025-01", "to": "2025-01"}))["total"]
        mar = (await _stats(client, headers, kind="orientation", **{"from": "2025-03", "to": "2025-03"}))["total"]
        feb = (await _stats(client, headers, kind="orientation", **{"from": "2025-02", "to": "2025-02"}))["total"]
        assert whole - jan["cases"] - mar["cases"] == 0
        assert feb["suppressed"] is True
        assert feb["cases"] is None
        # Groupings: all kinds of February minus February's IPs leaves nothing either.
        february = {"from": "2025-02", "to": "2025-02"}
        by_kind = await _stats(client, headers, group_by="kind", **february)
        everything = (await _stats(client, headers, **february))["total"]["handoffs"]
        shown = sum(c["handoffs"] for c in by_kind["cells"] if not c["suppressed"])
        assert everything - shown == 0

    async def test_a_lone_small_cell_takes_a_neighbour_with_it(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=14, status="accepted")
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=11, status="completed")
        await _insert(
            reader,
            collectivite="93D",
            month="2025-01",
            kind="orientation",
            cases=3,
            status="declined",
            decline_reason="no_capacity",
        )
        headers = auth("department", collectivite="93D")
        body = await _stats(client, headers, group_by="status")
        cells = {c["status"]: c for c in body["cells"]}
        assert cells["declined"]["suppressed"] is True
        assert cells["completed"]["suppressed"] is True  # the smallest published one, complementary
        assert cells["accepted"]["cases"] == 14
        # The month's total (28) minus what is shown (14) is 14: two cells' sum, neither recoverable.
        total = (await _stats(client, headers))["total"]["cases"]
        assert total - cells["accepted"]["cases"] == 14
        # A filter selects from the protected table: it does not unmask the complementary cell.
        filtered = await _stats(client, headers, group_by="month", kind="orientation")
        assert filtered["cells"][0]["cases"] == 28
        only_completed = await _stats(client, headers, group_by="status", receiver_kind="crip")
        assert {c["status"]: c["suppressed"] for c in only_completed["cells"]}["completed"] is True

    async def test_a_filter_without_grouping_does_not_unmask_a_complementary_cell(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=20, receiver="association")
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=3, receiver="crip")
        headers = auth("department", collectivite="93D")
        assert (await _stats(client, headers))["total"]["cases"] == 23
        by_receiver = await _stats(client, headers, group_by="receiver_kind")
        assert [c["suppressed"] for c in by_receiver["cells"]] == [True, True]
        # 23 minus the associations' 20 would give the CRIP's 3: the filtered total is its hidden cell.
        for receiver_kind in ("association", "crip"):
            only = await _stats(client, headers, receiver_kind=receiver_kind)
            assert only["total"]["suppressed"] is True
            assert only["total"]["cases"] is None
            assert [c["suppressed"] for c in only["cells"]] == [True]

    async def test_a_lone_masked_count_takes_a_neighbour_with_it(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        for month, declined in (("2025-01", 3), ("2025-02", 12)):
            await _insert(reader, collectivite="93D", month=month, kind="orientation", cases=15)
            await _insert(
                reader,
                collectivite="93D",
                month=month,
                kind="orientation",
                cases=declined,
                status="declined",
                decline_reason="no_capacity",
            )
        body = await _stats(client, auth("department", collectivite="93D"), group_by="month")
        assert body["total"]["declined_rate"] == round(15 / 45, 4)  # 15 declines, published
        january, february = body["cells"]
        # January's 3 declines are masked; February's 12 would give them away (15 - 12), so they go too.
        assert january["declined_rate"] is february["declined_rate"] is None
        assert "declined" in january["masked"]
        assert "declined" in february["masked"]
        assert january["accepted_rate"] == round(15 / 18, 4)

    async def test_small_counts_inside_a_cell_are_masked(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=20, status="accepted")
        await _insert(
            reader,
            collectivite="93D",
            month="2025-01",
            kind="orientation",
            cases=2,
            status="declined",
            decline_reason="refused_by_young_person",
        )
        body = await _stats(client, auth("department", collectivite="93D"), group_by="month")
        cell = body["cells"][0]
        assert cell["cases"] == 22
        assert cell["declined_rate"] is None
        assert cell["declined_rate_by_reason"]["refused_by_young_person"] is None
        assert cell["accepted_rate"] == round(20 / 22, 4)
        assert {"declined", "declined_refused_by_young_person"} <= set(cell["masked"])


async def test_months_are_paris_months(client: httpx.AsyncClient, auth, reader: AsyncConnection) -> None:  # type: ignore[no-untyped-def]
    # 31 January, 23:30 UTC is 1 February, 00:30 in Paris: a February handoff, in February's period only.
    late = datetime(2025, 1, 31, 23, 30, tzinfo=UTC)
    await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=12, created=late)
    headers = auth("department", collectivite="93D")
    body = await _stats(client, headers, group_by="month")
    assert [(c["month"], c["cases"]) for c in body["cells"]] == [("2025-02", 12)]
    january = await _stats(client, headers, **{"from": "2025-01", "to": "2025-01"})
    assert january["cells"][0]["suppressed"] is True
    assert january["total"]["cases"] is None


async def test_csv_has_the_same_cells(client: httpx.AsyncClient, auth, reader: AsyncConnection) -> None:  # type: ignore[no-untyped-def]
    await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=15)
    await _insert(
        reader,
        collectivite="93D",
        month="2025-02",
        kind="signalement",
        cases=12,
        status="declined",
        decline_reason="out_of_territory",
    )
    headers = auth("department", collectivite="93D")
    as_json = await _stats(client, headers, group_by=["month", "kind"])
    response = await client.get(
        URL, params={**PERIOD, "group_by": ["month", "kind"]}, headers={**headers, "Accept": "text/csv"}
    )
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["month"], r["kind"], r["cases"]) for r in rows] == [
        (c["month"], c["kind"], str(c["cases"]) if c["cases"] is not None else "") for c in as_json["cells"]
    ]
    assert rows[1]["declined_rate_out_of_territory"] == "1.0"


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"from": "2025-13"}, "from"),
        ({"to": "25-01"}, "to"),
        ({"from": "2025-04", "to": "2025-01"}, "from"),
        ({"group_by": "favourite_colour"}, "group_by"),
        ({"group_by": ["month", "month"]}, "group_by"),
        ({"kind": "gossip"}, "kind"),
        ({"specialism": "sorcery"}, "specialism"),
        ({"from": "1999-01"}, "from"),
    ],
)
async def test_bad_statistics_requests(
    client: httpx.AsyncClient, specialist: dict[str, str], params: dict[str, Any], name: str
) -> None:
    response = await client.get(URL, params=params, headers=specialist)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["name"] == name


async def test_figures_match_a_brute_force_recomputation(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    reader: AsyncConnection,
) -> None:
    rng = random.Random(6)
    rows: list[Row] = []
    for collectivite in ("93D", "75C", "69M"):
        for month in ("2025-01", "2025-02", "2025-03"):
            for kind in ("orientation", "information_preoccupante"):
                for status in ("accepted", "declined", "completed"):
                    await _insert(
                        reader,
                        collectivite=collectivite,
                        month=month,
                        kind=kind,
                        cases=rng.randint(0, 9),
                        status=status,
                        age=rng.choice((11, 14, 16, 18)),
                        ack_hours=rng.choice((1, 3, 30)),
                        decline_reason="no_capacity" if status == "declined" else None,
                        per_case=rng.choice((1, 2)),
                        rows=rows,
                    )
    body = await _stats(client, auth("specialist"), group_by=["collectivite", "month", "kind"])
    k = body["k"]
    atoms: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for row in rows:
        atoms[(row.collectivite, row.month, row.kind)].append(row)
    for cell in body["cells"]:
        members = atoms[(cell["collectivite"], cell["month"], cell["kind"])]
        cases = len({r.case for r in members})
        assert cell["suppressed"] is (cases < k), (cell, cases)
        if cell["suppressed"]:
            assert cell["handoffs"] is None
            continue
        assert (cell["handoffs"], cell["cases"]) == (len(members), cases)
        accepted = sum(1 for r in members if r.accepted_at)
        if 0 < accepted < k:
            assert "accepted" in cell["masked"]
        if "accepted" in cell["masked"]:
            assert cell["accepted_rate"] is None
        else:
            assert cell["accepted_rate"] == round(accepted / len(members), 4)
        acks = sorted((r.acknowledged_at - r.created_at).total_seconds() / 3600 for r in members if r.acknowledged_at)
        if len(acks) >= k:
            assert cell["median_hours_to_acknowledgement"] == pytest.approx(_percentile(acks, 0.5), abs=0.01)
            assert cell["p90_hours_to_acknowledgement"] == pytest.approx(_percentile(acks, 0.9), abs=0.01)
    present = [
        c for c in body["cells"] if len({r.case for r in atoms[(c["collectivite"], c["month"], c["kind"])]}) >= k
    ]
    assert any(c["masked"] for c in present)  # the generated data exercises masking
    for measure in ("accepted", "declined", "declined_no_capacity"):
        _assert_no_lone_hidden(present, ["collectivite", "month", "kind"], measure)
    kept = [r for key, members in atoms.items() if len({m.case for m in members}) >= k for r in members]
    assert body["total"]["handoffs"] == len(kept)
    assert body["total"]["cases"] == len({r.case for r in kept})
    assert len(body["cells"]) == len(atoms)

    # A grouping across atoms: every published cell matches, every small one is hidden, and no line of
    # the table has a lone hidden cell that its line total would give away.
    body = await _stats(client, auth("specialist"), group_by=["age_band", "status"])
    band = {11: "10-12", 14: "13-15", 16: "16-17", 18: "18+"}
    expected: dict[tuple[str, str], set[uuid.UUID]] = defaultdict(set)
    for row in kept:
        expected[(band[row.age], row.status)].add(row.case)
    cells = {(c["age_band"], c["status"]): c for c in body["cells"]}
    assert set(expected) <= set(cells)
    hidden = set()
    for key, cell in cells.items():
        cases = len(expected.get(key, ()))
        if cell["suppressed"]:
            hidden.add(key)
        else:
            assert cell["cases"] == cases >= k
    assert {key for key, members in expected.items() if len(members) < k} <= hidden
    assert 0 < len(hidden) < len(cells)  # the generated data exercises both sides
    for axis in (0, 1):
        lines: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for key in expected:
            lines[key[1 - axis]].append(key)
        for members in lines.values():
            assert len(members) == 1 or sum(key in hidden for key in members) != 1, members


def _assert_no_lone_hidden(cells: list[dict[str, Any]], dims: list[str], measure: str | None) -> None:
    """No line of the table (cells differing in one dimension) hides exactly one value of `measure` (of
    the cell itself when None): its line total would give it away."""
    for axis, _ in enumerate(dims):
        lines: dict[tuple[Any, ...], list[bool]] = defaultdict(list)
        for cell in cells:
            line = tuple(cell[d] for i, d in enumerate(dims) if i != axis)
            lines[line].append(cell["suppressed"] or (measure is not None and measure in cell["masked"]))
        for line, hidden in lines.items():
            assert len(hidden) == 1 or sum(hidden) != 1, (measure, dims[axis], line)


def _percentile(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    position = fraction * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


async def test_needs_count_empty_searches_per_commune_without_the_point(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    reader: AsyncConnection,
) -> None:
    specialist = auth("specialist")
    for i in range(12):
        response = await client.get(
            "/v1/services/search",
            headers=specialist,
            params={
                "lat": 48.9062 + i / 10000,
                "lon": 2.4455,
                "radius_km": 0.1,
                "include_covering": "false",
                "specialism": "youth-addiction-care",
            },
        )
        assert response.json()["features"] == []
    stored = await (
        await reader.execute(
            "SELECT commune_code, specialism, searches FROM empty_search WHERE specialism = 'youth-addiction-care'"
        )
    ).fetchall()
    assert [tuple(r) for r in stored] == [("93008", "youth-addiction-care", 12)]  # Bobigny, never the point
    this_month = datetime.now(UTC).strftime("%Y-%m")
    body = (
        await client.get(
            "/v1/stats/needs",
            params={"from": this_month, "to": this_month},
            headers=auth("department", collectivite="93D"),
        )
    ).json()
    cell = next(c for c in body["cells"] if c["specialism"] == "youth-addiction-care")
    assert (cell["collectivite"], cell["empty_searches"]) == ("93D", 12)


async def test_coverage_of_a_collectivite(client: httpx.AsyncClient, auth, reader: AsyncConnection) -> None:  # type: ignore[no-untyped-def]
    body = (
        await client.get(
            "/v1/stats/coverage",
            params={"specialism": "crip", "within_km": 25, "geometry": "true"},
            headers=auth("department", collectivite="93D"),
        )
    ).json()
    item = body["items"][0]
    population = await (
        await reader.execute("SELECT sum(population) FROM commune WHERE collectivite_code = '93D'")
    ).fetchone()
    assert item["population"] == population[0]
    assert item["covered_share"] == 1.0  # the CRIP sits in Bobigny, within 25 km of every commune of 93
    assert item["uncovered_communes"] == []
    narrow = (
        await client.get(
            "/v1/stats/coverage",
            params={"specialism": "crip", "within_km": 3},
            headers=auth("department", collectivite="93D"),
        )
    ).json()["items"][0]
    assert 0 < narrow["covered_share"] < 1
    names = [c["name"] for c in narrow["uncovered_communes"]]
    assert "Montreuil" in names
    assert all(c["population"] >= 1000 for c in narrow["uncovered_communes"])


async def test_needs_cannot_be_differenced_across_periods(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    reader: AsyncConnection,
) -> None:
    for month, cases in (("2025-01", 12), ("2025-02", 3)):
        await _insert(
            reader,
            collectivite="93D",
            month=month,
            kind="orientation",
            cases=cases,
            status="declined",
            decline_reason="no_capacity",
        )
    headers = auth("department", collectivite="93D")

    async def declined(first: str, last: str) -> dict[str, Any]:
        response = await client.get("/v1/stats/needs", params={"from": first, "to": last}, headers=headers)
        assert response.status_code == 200, response.text
        [cell] = response.json()["cells"]
        assert cell["specialism"] is None  # these cases named no need: counted, not dropped
        return cell

    both, january, february = (
        await declined("2025-01", "2025-02"),
        await declined("2025-01", "2025-01"),
        await declined("2025-02", "2025-02"),
    )
    assert both["declined_no_capacity"] - january["declined_no_capacity"] == 0
    assert february["declined_no_capacity"] is None
    assert both["suppressed"] == february["suppressed"] == ["declined_no_capacity"]
    assert january["suppressed"] == []
