"""Statistics: scope (a department gets its own figures only), small-cell protection, differencing,
perturbation, and figures checked against a brute-force recomputation on a generated dataset.

Every published count is perturbed (directory/disclosure.py): expected figures are computed here from
the true ones and the handoffs they count, with the same rule."""

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
from fastapi import FastAPI
from psycopg import AsyncConnection

from api.ratelimit import RateLimiter
from directory import disclosure, stats

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
    byte: int | None = None,
) -> list[Row]:
    """`cases` cases with `per_case` handoffs each, created mid-`month` (or at `created`), in `collectivite`;
    with `byte`, every handoff id ends with that byte (it sets the perturbation keys)."""
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
            if byte is not None:
                handoff_id = uuid.UUID(bytes=handoff_id.bytes[:15] + bytes([byte]))
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
            row = Row(
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
            made.append(row)
            if rows is not None:
                rows.append(row)
    return made


# Which handoffs each published count counts (directory/stats.py COUNTED), for the expected noise.
COUNTS_WHICH = {
    "handoffs": lambda r: True,
    "cases": lambda r: True,
    "accepted": lambda r: r.accepted_at is not None,
    "declined": lambda r: r.status == "declined",
    **{f"declined_{reason}": (lambda r, reason=reason: r.decline_reason == reason) for reason in stats.DECLINE_REASONS},
}


def published(rows: list[Row], measure: str = "cases") -> int:
    """The figure the API publishes for these handoffs: the true count, perturbed by their keys."""
    counted = [r for r in rows if COUNTS_WHICH[measure](r)]
    true = len({r.case for r in counted}) if measure == "cases" else len(counted)
    return disclosure.perturb(true, sum(r.handoff.bytes[15] for r in counted), stats.SALTS[measure])


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
        ours = await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=12)
        await _insert(reader, collectivite="75C", month="2025-01", kind="orientation", cases=30)
        seine_saint_denis = auth("department", collectivite="93D")
        mine = await _stats(client, seine_saint_denis, group_by="collectivite")
        assert [c["collectivite"] for c in mine["cells"]] == ["93D"]
        assert mine["total"]["cases"] == published(ours)
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
        seine_saint_denis = await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=12)
        paris = await _insert(reader, collectivite="75C", month="2025-01", kind="orientation", cases=30)
        body = await _stats(client, auth("specialist"), group_by="collectivite")
        cases = {c["collectivite"]: c["cases"] for c in body["cells"]}
        assert cases == {"75C": published(paris), "93D": published(seine_saint_denis)}
        assert body["total"]["cases"] == published(paris + seine_saint_denis)

    async def test_partners_get_no_statistics(self, client: httpx.AsyncClient, auth) -> None:  # type: ignore[no-untyped-def]
        for path in (URL, "/v1/stats/needs", "/v1/stats/coverage"):
            assert (await client.get(path, headers=auth("partner"))).status_code == 403

    async def test_every_query_is_journalled_and_rate_limited(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        app.state.stats_limiter = RateLimiter(2, scope="statistics")
        analyst = auth("department", collectivite="93D", subject="analyst-93")
        assert (await client.get(URL, params=PERIOD, headers=analyst)).status_code == 200
        assert (await client.get(URL, params={"collectivite": "75C"}, headers=analyst)).status_code == 404
        limited = await client.get(URL, params=PERIOD, headers=analyst)
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert (await client.get(URL, params=PERIOD, headers=auth("partner", subject="a-partner"))).status_code == 403
        journal = await (
            await reader.execute(
                "SELECT actor_subject, action, outcome FROM audit_event WHERE object_type = 'statistics' ORDER BY id"
            )
        ).fetchall()
        assert [tuple(row) for row in journal] == [
            ("analyst-93", "stats.handoffs.read", "allowed"),
            ("analyst-93", "stats.handoffs.read", "not_found"),
            ("analyst-93", "stats.read", "rate_limited"),
            ("a-partner", "stats.read", "denied"),
        ]


class TestSmallCells:
    async def test_cells_under_k_are_suppressed_whole(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        january = await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=15)
        await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=4)  # a small atom
        march = await _insert(reader, collectivite="93D", month="2025-03", kind="orientation", cases=11)
        body = await _stats(client, auth("department", collectivite="93D"), group_by="month")
        cells = {c["month"]: c for c in body["cells"]}
        assert (cells["2025-01"]["cases"], cells["2025-03"]["cases"]) == (published(january), published(march))
        # Its atom is left out of every figure, and its cell says so without a number.
        assert cells["2025-02"]["suppressed"] is True
        assert cells["2025-02"]["cases"] is cells["2025-02"]["handoffs"] is None
        assert body["total"]["cases"] == published(january + march)
        assert body["k"] == 10
        assert "fewer than k" in body["suppression"]

    async def test_two_overlapping_queries_cannot_reveal_a_suppressed_cell(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        headers = auth("department", collectivite="93D")
        january = await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=15)
        await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=4)
        march = await _insert(reader, collectivite="93D", month="2025-03", kind="orientation", cases=11)
        ips = await _insert(reader, collectivite="93D", month="2025-02", kind="information_preoccupante", cases=20)
        # Periods: Jan–Mar holds nothing of February's orientations, the very same handoffs as Jan and Mar.
        whole = (await _stats(client, headers, kind="orientation"))["total"]
        jan = (await _stats(client, headers, kind="orientation", **{"from": "2025-01", "to": "2025-01"}))["total"]
        feb = (await _stats(client, headers, kind="orientation", **{"from": "2025-02", "to": "2025-02"}))["total"]
        assert whole["cases"] == published(january + march)
        assert jan["cases"] == published(january)
        assert feb["suppressed"] is True
        assert feb["cases"] is None
        # Groupings: all kinds of February are exactly February's IPs.
        february = {"from": "2025-02", "to": "2025-02"}
        by_kind = await _stats(client, headers, group_by="kind", **february)
        everything = (await _stats(client, headers, **february))["total"]["handoffs"]
        shown = [c["handoffs"] for c in by_kind["cells"] if not c["suppressed"]]
        assert shown == [everything] == [published(ips, "handoffs")]

    async def test_a_difference_of_periods_is_not_exact_below_the_atoms(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        """February's 3 declines are suppressed; Jan–Feb minus Jan would give them exactly without the
        noise, as both months' atoms are kept."""
        headers = auth("department", collectivite="93D")
        declines = {}
        for month, declined, byte in (("2025-01", 12, 0), ("2025-02", 3, 68)):
            await _insert(reader, collectivite="93D", month=month, kind="orientation", cases=20, byte=byte)
            declines[month] = await _insert(
                reader,
                collectivite="93D",
                month=month,
                kind="orientation",
                cases=declined,
                status="declined",
                decline_reason="no_capacity",
                byte=byte,
            )

        async def declined(first: str, last: str) -> dict[str, Any]:
            cells = (await _stats(client, headers, group_by="status", **{"from": first, "to": last}))["cells"]
            return next(c for c in cells if c["status"] == "declined")

        both, january, february = (
            await declined("2025-01", "2025-02"),
            await declined("2025-01", "2025-01"),
            await declined("2025-02", "2025-02"),
        )
        assert february["suppressed"] is True
        assert both["cases"] == published(declines["2025-01"] + declines["2025-02"])
        assert january["cases"] == published(declines["2025-01"])
        assert both["cases"] - january["cases"] != 3
        assert abs(both["cases"] - january["cases"] - 3) <= 4

    async def test_a_lone_small_cell_takes_a_neighbour_with_it(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        accepted = await _insert(
            reader, collectivite="93D", month="2025-01", kind="orientation", cases=14, status="accepted"
        )
        completed = await _insert(
            reader, collectivite="93D", month="2025-01", kind="orientation", cases=11, status="completed"
        )
        declined = await _insert(
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
        assert cells["accepted"]["cases"] == published(accepted)
        # The month's total minus what is shown is the sum of two hidden cells (and noise).
        everything = accepted + completed + declined
        assert (await _stats(client, headers))["total"]["cases"] == published(everything)
        # A filter selects from the protected table: it does not unmask the complementary cell.
        filtered = await _stats(client, headers, group_by="month", kind="orientation")
        assert filtered["cells"][0]["cases"] == published(everything)
        same = await _stats(client, headers, group_by="kind", kind="orientation")
        assert [c["cases"] for c in same["cells"]] == [same["total"]["cases"]] == [published(everything)]
        only_completed = await _stats(client, headers, group_by="status", receiver_kind="crip")
        assert {c["status"]: c["suppressed"] for c in only_completed["cells"]}["completed"] is True

    async def test_the_same_cells_are_hidden_whatever_the_order_of_the_groupings(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        counts = {"2025-01": (3, 4, 3), "2025-02": (14, 20, 3), "2025-03": (4, 20, 20)}
        for month, by_status in counts.items():
            for status, cases in zip(("accepted", "completed", "declined"), by_status, strict=True):
                reason = "no_capacity" if status == "declined" else None
                await _insert(
                    reader,
                    collectivite="93D",
                    month=month,
                    kind="orientation",
                    cases=cases,
                    status=status,
                    decline_reason=reason,
                )
        headers = auth("department", collectivite="93D")
        hidden = []
        for group_by in (["month", "status"], ["status", "month"]):
            body = await _stats(client, headers, group_by=group_by)
            hidden.append({(c["month"], c["status"]) for c in body["cells"] if c["suppressed"]})
        assert hidden[0] == hidden[1]
        assert ("2025-02", "declined") in hidden[0]

    async def test_a_filter_without_grouping_does_not_unmask_a_complementary_cell(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        associations = await _insert(
            reader, collectivite="93D", month="2025-01", kind="orientation", cases=20, receiver="association"
        )
        crip = await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=3, receiver="crip")
        headers = auth("department", collectivite="93D")
        assert (await _stats(client, headers))["total"]["cases"] == published(associations + crip)
        by_receiver = await _stats(client, headers, group_by="receiver_kind")
        assert [c["suppressed"] for c in by_receiver["cells"]] == [True, True]
        # 23 minus the associations' 20 would give the CRIP's 3: the filtered total is its hidden cell.
        for receiver_kind in ("association", "crip"):
            only = await _stats(client, headers, receiver_kind=receiver_kind)
            assert only["total"]["suppressed"] is True
            assert only["total"]["cases"] is None
            assert [c["suppressed"] for c in only["cells"]] == [True]
            # Grouped as well, the total is still the filtered dimension's protected cell.
            grouped = await _stats(client, headers, group_by="month", receiver_kind=receiver_kind)
            assert grouped["total"]["suppressed"] is True
            assert grouped["total"]["cases"] is None

    async def test_a_lone_masked_count_takes_a_neighbour_with_it(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        rows: dict[str, list[Row]] = {}
        for month, declined in (("2025-01", 3), ("2025-02", 12)):
            rows[month] = await _insert(reader, collectivite="93D", month=month, kind="orientation", cases=15)
            rows[month] += await _insert(
                reader,
                collectivite="93D",
                month=month,
                kind="orientation",
                cases=declined,
                status="declined",
                decline_reason="no_capacity",
            )
        body = await _stats(client, auth("department", collectivite="93D"), group_by="month")
        everything = rows["2025-01"] + rows["2025-02"]
        assert body["total"]["declined_rate"] == _rate(everything, "declined")  # 15 declines, published
        january, february = body["cells"]
        # January's 3 declines are masked; February's 12 would give them away (15 - 12), so they go too.
        assert january["declined_rate"] is february["declined_rate"] is None
        assert "declined" in january["masked"]
        assert "declined" in february["masked"]
        assert january["accepted_rate"] == _rate(rows["2025-01"], "accepted")

    async def test_small_counts_inside_a_cell_are_masked(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        rows = await _insert(
            reader, collectivite="93D", month="2025-01", kind="orientation", cases=20, status="accepted"
        )
        rows += await _insert(
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
        assert cell["cases"] == published(rows)
        assert cell["declined_rate"] is None
        assert cell["declined_rate_by_reason"]["refused_by_young_person"] is None
        assert cell["accepted_rate"] == _rate(rows, "accepted")
        assert {"declined", "declined_refused_by_young_person"} <= set(cell["masked"])


async def test_a_handoff_counts_once_in_the_total_of_a_grouping_by_specialism(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    reader: AsyncConnection,
) -> None:
    rows = await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=12)
    await reader.execute(
        "UPDATE case_record SET needs = '{legal-support,psychotrauma-care}' WHERE id = ANY(%s)",
        ([r.case for r in rows],),
    )
    body = await _stats(client, auth("department", collectivite="93D"), group_by="specialism")
    assert {c["specialism"]: c["handoffs"] for c in body["cells"]} == {
        "legal-support": published(rows, "handoffs"),
        "psychotrauma-care": published(rows, "handoffs"),
    }
    assert body["total"]["handoffs"] == published(rows, "handoffs")  # not twice


async def test_months_are_paris_months(client: httpx.AsyncClient, auth, reader: AsyncConnection) -> None:  # type: ignore[no-untyped-def]
    # 31 January, 23:30 UTC is 1 February, 00:30 in Paris: a February handoff, in February's period only.
    late = datetime(2025, 1, 31, 23, 30, tzinfo=UTC)
    rows = await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=12, created=late)
    headers = auth("department", collectivite="93D")
    body = await _stats(client, headers, group_by="month")
    assert [(c["month"], c["cases"]) for c in body["cells"]] == [("2025-02", published(rows))]
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
    reasons = as_json["cells"][1]["declined_rate_by_reason"]
    assert rows[1]["declined_rate_out_of_territory"] == str(reasons["out_of_territory"])


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
        assert (cell["handoffs"], cell["cases"]) == (published(members, "handoffs"), published(members))
        assert abs(cell["cases"] - cases) <= 2
        accepted = sum(1 for r in members if r.accepted_at)
        if 0 < accepted < k:
            assert "accepted" in cell["masked"]
        if "accepted" in cell["masked"]:
            assert cell["accepted_rate"] is None
        else:
            assert cell["accepted_rate"] == _rate(members, "accepted")
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
    assert body["total"]["handoffs"] == published(kept, "handoffs")
    assert body["total"]["cases"] == published(kept)
    assert len(body["cells"]) == len(atoms)

    # A grouping across atoms: every published cell matches, every small one is hidden, and no line of
    # the table has a lone hidden cell that its line total would give away.
    body = await _stats(client, auth("specialist"), group_by=["age_band", "status"])
    band = {11: "10-12", 14: "13-15", 16: "16-17", 18: "18+"}
    expected: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in kept:
        expected[(band[row.age], row.status)].append(row)
    cells = {(c["age_band"], c["status"]): c for c in body["cells"]}
    assert set(expected) <= set(cells)
    hidden = set()
    for key, cell in cells.items():
        if cell["suppressed"]:
            hidden.add(key)
        else:
            assert len({r.case for r in expected[key]}) >= k
            assert cell["cases"] == published(expected[key])
    assert {key for key, members in expected.items() if len({r.case for r in members}) < k} <= hidden
    assert 0 < len(hidden) < len(cells)  # the generated data exercises both sides
    for axis in (0, 1):
        lines: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for key in expected:
            lines[key[1 - axis]].append(key)
        for members in lines.values():
            assert len(members) == 1 or sum(key in hidden for key in members) != 1, members


def _rate(rows: list[Row], measure: str) -> float:
    handoffs = published(rows, "handoffs")
    return round(min(published(rows, measure), handoffs) / handoffs, 4)


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
    def no_capacity(month: str, cases: int, kind: str = "orientation") -> dict[str, Any]:
        return {
            "collectivite": "93D",
            "month": month,
            "kind": kind,
            "cases": cases,
            "status": "declined",
            "decline_reason": "no_capacity",
        }

    january = await _insert(reader, **no_capacity("2025-01", 12))
    # February: a kept atom (23 cases) whose 3 declines for lack of capacity are too few to show.
    await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=20)
    await _insert(reader, **no_capacity("2025-02", 3))
    # March: an atom of 4 cases, left out of every figure, beside 20 IPs declined for lack of capacity.
    await _insert(reader, **no_capacity("2025-03", 4))
    ips = await _insert(reader, **no_capacity("2025-03", 20, kind="information_preoccupante"))
    headers = auth("department", collectivite="93D")

    async def cell(first: str, last: str) -> dict[str, Any]:
        response = await client.get("/v1/stats/needs", params={"from": first, "to": last}, headers=headers)
        assert response.status_code == 200, response.text
        [only] = response.json()["cells"]
        assert only["specialism"] is None  # these cases named no need: counted, not dropped
        return only

    def need(rows: list[Row]) -> int:
        key = sum(r.handoff.bytes[15] for r in rows)
        return disclosure.perturb(len(rows), key, stats.NEED_SALTS["declined_no_capacity"])

    both, jan, feb = (
        await cell("2025-01", "2025-02"),
        await cell("2025-01", "2025-01"),
        await cell("2025-02", "2025-02"),
    )
    assert both["declined_no_capacity"] == jan["declined_no_capacity"] == need(january)
    assert feb["declined_no_capacity"] is None
    assert both["suppressed"] == feb["suppressed"] == ["declined_no_capacity"]
    assert jan["suppressed"] == []
    # The handoffs of the small atom count in neither endpoint.
    march = await cell("2025-03", "2025-03")
    assert march["declined_no_capacity"] == need(ips)
    by_reason = await _stats(
        client,
        headers,
        group_by="decline_reason",
        kind="information_preoccupante",
        **{"from": "2025-03", "to": "2025-03"},
    )
    assert [c["cases"] for c in by_reason["cells"]] == [published(ips)]
