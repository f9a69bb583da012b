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
from datetime import UTC, date, datetime, timedelta
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


async def _csv(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> httpx.Response:
    response = await client.get(URL, params={**PERIOD, **params}, headers={**headers, "Accept": "text/csv"})
    assert response.status_code == 200, response.text
    return response


def _csv_rows(text: str) -> list[dict[str, str]]:
    """The CSV's cells: its note lines (starting with '#') skipped, as a spreadsheet user would."""
    return list(csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")))


class TestScope:
    async def test_a_department_gets_its_own_territory_only(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=12, byte=7)
        await _insert(reader, collectivite="75C", month="2025-01", kind="orientation", cases=30)
        seine_saint_denis = auth("department", collectivite="93D")
        mine = await _stats(client, seine_saint_denis, group_by="collectivite")
        assert [c["collectivite"] for c in mine["cells"]] == ["93D"]
        assert mine["total"]["cases"] == 12
        assert mine["filters"]["collectivite"] == ["93D"]
        for params in (
            {"collectivite": "75C"},
            {"collectivite": "75C", "group_by": "month"},
            {"collectivite": "99Z"},  # no such collectivité: the very same answer
            # Scope before validation: another collectivité is a 404 whatever else the query says.
            {"collectivite": "75C", "from": "2025-13"},
            {"collectivite": "75C", "group_by": "favourite_colour"},
            {"collectivite": "75C", "kind": ["orientation", "signalement"]},
        ):
            response = await client.get(URL, params={**PERIOD, **params}, headers=seine_saint_denis)
            assert response.status_code == 404, params
            assert response.json()["detail"] == "no such collectivité in your scope"
            assert "30" not in response.text
        for params in (
            {"collectivite": "75c"},
            {"collectivite": " 75C"},
            {"collectivite": "75C,93D"},
            {"collectivite": "*"},
        ):
            response = await client.get(URL, params={**PERIOD, **params}, headers=seine_saint_denis)
            assert response.status_code == 422
            assert response.json()["errors"][0]["name"] == "collectivite"
        repeated = await client.get(f"{URL}?collectivite=93D&collectivite=75C", headers=seine_saint_denis)
        assert repeated.status_code == 422
        assert repeated.json()["errors"][0]["name"] == "collectivite"
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
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=12, byte=7)
        await _insert(reader, collectivite="75C", month="2025-01", kind="orientation", cases=30, byte=3)
        body = await _stats(client, auth("specialist"), group_by="collectivite")
        # Every collectivité is a cell, in code order; those with nothing (or too little) are suppressed.
        assert len(body["cells"]) == 100
        assert [c["collectivite"] for c in body["cells"][:3]] == ["01D", "02D", "03D"]
        shown = {c["collectivite"]: c["cases"] for c in body["cells"] if not c["suppressed"]}
        assert shown == {"75C": 30, "93D": 12}
        assert body["total"]["cases"] == 42  # 43 after its noise, brought back to the 42 handoffs
        unknown = await client.get(URL, params={"collectivite": "99Z"}, headers=auth("specialist"))
        assert unknown.status_code == 404

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
        app.state.stats_limiter = RateLimiter(4, scope="statistics")
        analyst = auth("department", collectivite="93D", subject="analyst-93")
        assert (await client.get(URL, params=PERIOD, headers=analyst)).status_code == 200
        assert (await client.get(URL, params={"collectivite": "75C"}, headers=analyst)).status_code == 404
        assert (await client.get(URL, params={"from": "2025-13"}, headers=analyst)).status_code == 422
        assert (await client.get(URL, params={"to": ["2025-01", "2025-02"]}, headers=analyst)).status_code == 422
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
            ("analyst-93", "stats.handoffs.read", "invalid"),
            ("analyst-93", "stats.handoffs.read", "invalid"),
            ("analyst-93", "stats.read", "rate_limited"),
            ("a-partner", "stats.read", "denied"),
        ]


class TestBlindToOneChild:
    """DESIGN.md §3: an answer is the same whether or not one more child exists in a group under k."""

    async def test_one_more_child_in_an_atom_under_k_changes_nothing(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=15, byte=1)
        await _insert(reader, collectivite="93D", month="2025-02", kind="information_preoccupante", cases=12, byte=2)
        headers = auth("department", collectivite="93D")
        queries: list[dict[str, Any]] = [
            {"group_by": ["month", "kind", "age_band"]},
            {"group_by": ["kind", "intake_channel", "decline_reason"]},
            {"group_by": "status", "kind": "signalement"},
            {},
        ]

        async def answers() -> list[tuple[str, bytes, dict[str, str]]]:
            out = []
            for params in queries:
                for accept in ("application/json", "text/csv"):
                    response = await client.get(URL, params={**PERIOD, **params}, headers={**headers, "Accept": accept})
                    assert response.status_code == 200
                    kept = {name: response.headers[name] for name in ("content-type", "content-length")}
                    kept["content-disposition"] = response.headers.get("content-disposition", "")
                    out.append((accept, response.content, kept))
            return out

        before = await answers()
        # One child, 8 years old, declined, in March's signalements: an atom of one case, until now empty.
        await _insert(
            reader,
            collectivite="93D",
            month="2025-03",
            kind="signalement",
            cases=1,
            age=8,
            status="declined",
            decline_reason="refused_by_young_person",
        )
        assert await answers() == before
        # And a second one in the same group, still under k.
        await _insert(reader, collectivite="93D", month="2025-03", kind="signalement", cases=1, age=8)
        assert await answers() == before

    async def test_one_more_child_in_a_small_cell_of_a_kept_atom_changes_no_cell(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        """The child counts in its atom (of k cases or more), so the total moves; no cell does."""
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=20, age=15, byte=4)
        await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=12, age=16, byte=7)
        headers = auth("department", collectivite="93D")
        params = {"group_by": ["month", "age_band", "status"]}
        before = await _stats(client, headers, **params)
        before_csv = (await _csv(client, headers, **params)).text
        await _insert(
            reader,
            collectivite="93D",
            month="2025-01",
            kind="orientation",
            cases=1,
            age=9,
            status="declined",
            decline_reason="no_capacity",
        )
        after = await _stats(client, headers, **params)
        assert after["cells"] == before["cells"]
        assert (await _csv(client, headers, **params)).text == before_csv
        assert len(after["cells"]) == 3 * 5 * 10
        shown = [(c["month"], c["age_band"], c["status"], c["cases"]) for c in after["cells"] if not c["suppressed"]]
        assert shown == [("2025-01", "13-15", "accepted", 20), ("2025-02", "16-17", "accepted", 12)]

    async def test_needs_are_blind_to_one_more_child_under_k(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        january = {"collectivite": "93D", "month": "2025-01", "kind": "orientation", "byte": 1}
        await _insert(reader, **january, cases=12, status="declined", decline_reason="no_capacity")
        await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=20, byte=2)
        headers = auth("department", collectivite="93D")
        period = {"from": "2025-01", "to": "2025-03"}

        async def answer() -> httpx.Response:
            response = await client.get("/v1/stats/needs", params=period, headers=headers)
            assert response.status_code == 200
            return response

        before = await answer()
        assert before.json()["cells"] == [
            {
                "collectivite": "93D",
                "specialism": None,
                "empty_searches": None,
                "declined_no_capacity": 12,
                "declined_out_of_territory": None,
                "expired": None,
                "suppressed": ["empty_searches", "declined_out_of_territory", "expired"],
            }
        ]
        # In a kept atom (February's 20 orientations): a decline for lack of capacity, a first one that
        # month; one out of territory for a need no row lists; an expiry in an atom of one case.
        await _insert(
            reader,
            collectivite="93D",
            month="2025-02",
            kind="orientation",
            cases=1,
            status="declined",
            decline_reason="no_capacity",
        )
        out_of_territory = await _insert(
            reader,
            collectivite="93D",
            month="2025-02",
            kind="orientation",
            cases=1,
            status="declined",
            decline_reason="out_of_territory",
        )
        await reader.execute(
            "UPDATE case_record SET needs = '{legal-support}' WHERE id = %s", (out_of_territory[0].case,)
        )
        await _insert(reader, collectivite="93D", month="2025-03", kind="signalement", cases=1, status="expired")
        after = await answer()
        assert (after.content, after.headers["content-length"]) == (before.content, before.headers["content-length"])


class TestCompleteTables:
    async def test_every_combination_of_the_grouping_is_a_cell_in_a_fixed_order(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=15, age=14, byte=1)
        headers = auth("department", collectivite="93D")
        january = {"from": "2025-01", "to": "2025-01"}
        body = await _stats(client, headers, group_by=["age_band", "kind"], **january)
        keys = [(c["kind"], c["age_band"]) for c in body["cells"]]
        # The dimensions' fixed order (kind before age band), whatever order the query names them in.
        assert keys[:6] == [
            ("information_preoccupante", "0-9"),
            ("information_preoccupante", "10-12"),
            ("information_preoccupante", "13-15"),
            ("information_preoccupante", "16-17"),
            ("information_preoccupante", "18+"),
            ("orientation", "0-9"),
        ]
        assert len(keys) == 25
        assert [k for k, c in zip(keys, body["cells"], strict=True) if not c["suppressed"]] == [
            ("orientation", "13-15")
        ]
        suppressed = body["cells"][0]
        assert suppressed == {
            "kind": "information_preoccupante",
            "age_band": "0-9",
            **dict.fromkeys(stats.PUBLISHED),
            "masked": [],
            "suppressed": True,
        }
        # Grouping values with nulls (no specialism, not declined) come last.
        by_reason = await _stats(client, headers, group_by="decline_reason", **january)
        assert [c["decline_reason"] for c in by_reason["cells"]] == [
            "no_capacity",
            "other",
            "out_of_criteria",
            "out_of_territory",
            "refused_by_young_person",
            None,
        ]
        assert [c["suppressed"] for c in by_reason["cells"]] == [True] * 5 + [False]

    async def test_a_table_too_large_is_refused(self, client: httpx.AsyncClient, auth) -> None:  # type: ignore[no-untyped-def]
        # 100 collectivités × 12 months × 27 specialisms (or none): 32,400 cells.
        params = {"from": "2025-01", "to": "2025-12", "group_by": ["collectivite", "month", "specialism"]}
        response = await client.get(URL, params=params, headers=auth("specialist"))
        assert response.status_code == 422
        assert response.json()["errors"][0]["name"] == "group_by"
        # A department's own table of the same shape is 324 cells.
        mine = await client.get(URL, params=params, headers=auth("department", collectivite="93D"))
        assert mine.status_code == 200
        assert len(mine.json()["cells"]) == 12 * 27


class TestSmallCells:
    async def test_cells_under_k_are_suppressed_whole(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=15, byte=6)
        await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=4)  # a small atom
        await _insert(reader, collectivite="93D", month="2025-03", kind="orientation", cases=11, byte=8)
        body = await _stats(client, auth("department", collectivite="93D"), group_by="month")
        cells = {c["month"]: c for c in body["cells"]}
        assert cells["2025-01"]["cases"] == 15
        # Its atom is left out of every figure, and its cell says so without a number; as a lone
        # suppressed month, it takes the smallest other one with it (an empty month would too).
        assert [cells[m]["suppressed"] for m in ("2025-01", "2025-02", "2025-03")] == [False, True, True]
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
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=15, byte=6)
        await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=4)
        await _insert(reader, collectivite="93D", month="2025-03", kind="orientation", cases=11, byte=8)
        await _insert(reader, collectivite="93D", month="2025-02", kind="information_preoccupante", cases=20, byte=4)
        # Periods: Jan–Mar holds nothing of February's orientations, the very same handoffs as Jan and Mar.
        whole = (await _stats(client, headers, kind="orientation"))["total"]
        jan = (await _stats(client, headers, kind="orientation", **{"from": "2025-01", "to": "2025-01"}))["total"]
        feb = (await _stats(client, headers, kind="orientation", **{"from": "2025-02", "to": "2025-02"}))["total"]
        assert whole["cases"] == 26
        assert jan["cases"] == 15
        assert feb["suppressed"] is True
        assert feb["cases"] is None
        # Groupings: all kinds of February are exactly February's IPs.
        february = {"from": "2025-02", "to": "2025-02"}
        by_kind = await _stats(client, headers, group_by="kind", **february)
        everything = (await _stats(client, headers, **february))["total"]["handoffs"]
        shown = [c["handoffs"] for c in by_kind["cells"] if not c["suppressed"]]
        assert shown == [everything] == [20]

    async def test_a_difference_of_periods_is_not_exact_below_the_atoms(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        """February's 3 declines are suppressed; Jan–Feb minus Jan would give them exactly without the
        noise, as both months' atoms are kept."""
        headers = auth("department", collectivite="93D")
        for month, declined, byte in (("2025-01", 12, 0), ("2025-02", 3, 68)):
            await _insert(reader, collectivite="93D", month=month, kind="orientation", cases=20, byte=byte)
            await _insert(
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
        # 15 and 12 declines with the noise at their keys (12 × 0 + 3 × 68 = 204; 12 × 0 = 0): 16 and 10
        # handoffs (cases were 17 and 11 after their own noise, brought back to the handoffs).
        assert (both["cases"], january["cases"]) == (16, 10)
        assert both["cases"] - january["cases"] != 3

    async def test_a_lone_small_cell_takes_a_neighbour_with_it(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        for month, declined in (("2025-01", 3), ("2025-02", 12)):
            await _insert(reader, collectivite="93D", month=month, kind="orientation", cases=14, byte=1)
            await _insert(
                reader,
                collectivite="93D",
                month=month,
                kind="orientation",
                cases=declined,
                status="declined",
                decline_reason="no_capacity",
                byte=1,
            )
        headers = auth("department", collectivite="93D")
        two_months = {"from": "2025-01", "to": "2025-02", "group_by": ["month", "status"]}
        body = await _stats(client, headers, **two_months)
        cells = {(c["month"], c["status"]): c for c in body["cells"]}
        assert cells[("2025-01", "declined")]["suppressed"] is True
        # February's 12 declines would give January's 3 away (15 - 12): the smallest one of its line.
        assert cells[("2025-02", "declined")]["suppressed"] is True
        assert [key for key, c in cells.items() if not c["suppressed"]] == [
            ("2025-01", "accepted"),
            ("2025-02", "accepted"),
        ]
        # A filter selects from the protected table: it does not unmask the complementary cell.
        only_declined = await _stats(client, headers, **{**two_months, "group_by": "month"}, kind="orientation")
        assert [c["suppressed"] for c in only_declined["cells"]] == [False, False]
        same = await _stats(client, headers, **two_months, receiver_kind="crip")
        assert same["cells"] == body["cells"]

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
        await _insert(
            reader, collectivite="93D", month="2025-01", kind="orientation", cases=20, receiver="association", byte=4
        )
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=3, receiver="crip", byte=0)
        headers = auth("department", collectivite="93D")
        assert (await _stats(client, headers))["total"]["cases"] == 23
        by_receiver = await _stats(client, headers, group_by="receiver_kind")
        assert [(c["receiver_kind"], c["cases"]) for c in by_receiver["cells"]] == [
            ("association", 20),
            ("crip", None),
            ("health", None),
            ("justice", None),
            ("other", None),
            ("police", None),
            ("public_service", None),
        ]
        # The filtered total is the filter's cell of the table over that dimension: hidden for the CRIP.
        only = await _stats(client, headers, receiver_kind="crip")
        assert only["total"]["suppressed"] is True
        assert only["total"]["cases"] is None
        assert [c["suppressed"] for c in only["cells"]] == [True]
        grouped = await _stats(client, headers, group_by="month", receiver_kind="crip")
        assert grouped["total"]["suppressed"] is True
        assert grouped["total"]["cases"] is None
        associations = await _stats(client, headers, group_by="month", receiver_kind="association")
        assert associations["total"]["cases"] == 20

    async def test_a_lone_masked_count_takes_a_neighbour_with_it(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        for month, declined in (("2025-01", 3), ("2025-02", 12)):
            await _insert(reader, collectivite="93D", month=month, kind="orientation", cases=15, byte=19)
            await _insert(
                reader,
                collectivite="93D",
                month=month,
                kind="orientation",
                cases=declined,
                status="declined",
                decline_reason="no_capacity",
                byte=19,
            )
        body = await _stats(client, auth("department", collectivite="93D"), group_by="month", to="2025-02")
        assert body["total"]["declined_rate"] == 0.3333  # 15 declines of 45 handoffs, published
        january, february = body["cells"]
        # January's 3 declines are masked; February's 12 would give them away (15 - 12), so they go too.
        assert january["declined_rate"] is february["declined_rate"] is None
        assert "declined" in january["masked"]
        assert "declined" in february["masked"]
        assert january["accepted_rate"] == 0.8333  # 15 of 18

    async def test_small_counts_inside_a_cell_are_masked_and_zero_ones_too(
        self,
        client: httpx.AsyncClient,
        auth,  # type: ignore[no-untyped-def]
        reader: AsyncConnection,
    ) -> None:
        await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=20, byte=4)
        await _insert(
            reader,
            collectivite="93D",
            month="2025-01",
            kind="orientation",
            cases=2,
            status="declined",
            decline_reason="refused_by_young_person",
            byte=4,
        )
        body = await _stats(client, auth("department", collectivite="93D"), group_by="month", to="2025-01")
        [cell] = body["cells"]
        assert cell["cases"] == 22
        assert cell["declined_rate"] is None
        assert cell["declined_rate_by_reason"] == dict.fromkeys(stats.DECLINE_REASONS)
        assert cell["failed_rate"] is None  # no failure at all: masked like a few
        assert cell["accepted_rate"] == 0.9091  # 20 of 22
        assert cell["masked"] == [
            "declined",
            "declined_no_capacity",
            "declined_other",
            "declined_out_of_criteria",
            "declined_out_of_territory",
            "declined_refused_by_young_person",
            "failed",
            "overdue",
            "runaway_cases",
        ]


async def test_a_handoff_counts_once_in_the_total_of_a_grouping_by_specialism(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    reader: AsyncConnection,
) -> None:
    rows = await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=12, byte=7)
    await reader.execute(
        "UPDATE case_record SET needs = '{legal-support,psychotrauma-care}' WHERE id = ANY(%s)",
        ([r.case for r in rows],),
    )
    body = await _stats(client, auth("department", collectivite="93D"), group_by="specialism")
    assert len(body["cells"]) == 27  # every specialism (16 specialised, 10 general), and none
    assert {c["specialism"]: c["handoffs"] for c in body["cells"] if not c["suppressed"]} == {
        "legal-support": 12,
        "psychotrauma-care": 12,
    }
    assert body["total"]["handoffs"] == 12  # not twice


async def test_months_are_paris_months(client: httpx.AsyncClient, auth, reader: AsyncConnection) -> None:  # type: ignore[no-untyped-def]
    # 31 January, 23:30 UTC is 1 February, 00:30 in Paris: a February handoff, in February's period only.
    late = datetime(2025, 1, 31, 23, 30, tzinfo=UTC)
    await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=12, created=late, byte=7)
    headers = auth("department", collectivite="93D")
    body = await _stats(client, headers, group_by="month")
    assert [(c["month"], c["cases"]) for c in body["cells"]] == [("2025-01", None), ("2025-02", 12), ("2025-03", None)]
    january = await _stats(client, headers, **{"from": "2025-01", "to": "2025-01"})
    assert january["cells"][0]["suppressed"] is True
    assert january["total"]["cases"] is None


async def test_csv_has_the_same_cells_after_notes_stating_k_and_the_rule(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    reader: AsyncConnection,
) -> None:
    await _insert(reader, collectivite="93D", month="2025-01", kind="orientation", cases=15, byte=6)
    await _insert(
        reader,
        collectivite="93D",
        month="2025-02",
        kind="signalement",
        cases=12,
        status="declined",
        decline_reason="out_of_territory",
        byte=7,
    )
    headers = auth("department", collectivite="93D")
    as_json = await _stats(client, headers, group_by=["month", "kind"])
    response = await _csv(client, headers, group_by=["month", "kind"])
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="handoffs.csv"'
    lines = response.text.split("\r\n")
    assert lines[0] == "# k = 10"
    assert lines[1] == "# Rule: " + as_json["suppression"]
    assert lines[2] == "# Empty values are withheld under that rule. suppressed = true marks a cell withheld whole."
    assert lines[3].startswith("month,kind,handoffs,cases,accepted_rate,")
    rows = _csv_rows(response.text)
    assert len(rows) == 15
    assert [(r["month"], r["kind"], r["cases"]) for r in rows] == [
        (c["month"], c["kind"], str(c["cases"]) if c["cases"] is not None else "") for c in as_json["cells"]
    ]
    shown = [(r["month"], r["kind"], r["cases"], r["declined_rate_out_of_territory"]) for r in rows if r["cases"]]
    assert shown == [("2025-01", "orientation", "15", ""), ("2025-02", "signalement", "12", "1.0")]
    assert rows[0]["suppressed"] == "true"


async def test_the_parameters_are_declared(app: FastAPI) -> None:
    operations = app.openapi()["paths"]
    parameters = {p["name"]: p for p in operations["/v1/stats/handoffs"]["get"]["parameters"]}
    assert parameters["from"]["schema"]["anyOf"][0]["pattern"] == "^20[0-9]{2}-(0[1-9]|1[0-2])$"
    assert parameters["to"]["schema"]["anyOf"][0]["pattern"] == "^20[0-9]{2}-(0[1-9]|1[0-2])$"
    assert parameters["collectivite"]["schema"]["anyOf"][0]["pattern"] == "^[0-9]{1,3}[A-Z]{1,2}$"
    group_by = parameters["group_by"]["schema"]["anyOf"][0]
    assert group_by["maxItems"] == 4
    schemas = app.openapi()["components"]["schemas"]
    assert schemas["Dimension"]["enum"] == [
        "collectivite",
        "month",
        "kind",
        "status",
        "receiver_kind",
        "specialism",
        "age_band",
        "intake_channel",
        "decline_reason",
    ]
    coverage = {p["name"]: p for p in operations["/v1/stats/coverage"]["get"]["parameters"]}
    assert (coverage["within_km"]["schema"]["exclusiveMinimum"], coverage["within_km"]["schema"]["maximum"]) == (0, 100)
    needs = {p["name"] for p in operations["/v1/stats/needs"]["get"]["parameters"]}
    assert needs == {"collectivite", "from", "to"}


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"from": "2025-13"}, "from"),
        ({"to": "25-01"}, "to"),
        ({"from": "2025-04", "to": "2025-01"}, "from"),
        ({"group_by": "favourite_colour"}, "group_by"),
        ({"group_by": "month,kind"}, "group_by"),
        ({"group_by": ["month", "month"]}, "group_by"),
        ({"group_by": ["month", "kind", "status", "age_band", "specialism"]}, "group_by"),
        ({"kind": "gossip"}, "kind"),
        ({"kind": ["orientation", "signalement"]}, "kind"),
        ({"from": ["2025-01", "2025-02"]}, "from"),
        ({"specialism": ["legal-support", "psychotrauma-care"]}, "specialism"),
        ({"receiver_kind": "bakery"}, "receiver_kind"),
        ({"specialism": "sorcery"}, "specialism"),
        ({"from": "1999-01"}, "from"),
        ({"from": "2020-01", "to": "2025-01"}, "from"),
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
        if cases < k:
            assert cell["suppressed"] is True, (cell, cases)
        if cell["suppressed"]:
            assert cell["handoffs"] is None
            continue
        handoffs = published(members, "handoffs")
        assert (cell["handoffs"], cell["cases"]) == (handoffs, min(published(members), handoffs))
        assert abs(cell["cases"] - cases) <= 2
        accepted = sum(1 for r in members if r.accepted_at)
        if accepted < k:
            assert "accepted" in cell["masked"]
        if "accepted" in cell["masked"]:
            assert cell["accepted_rate"] is None
        else:
            # Within 2 of the true count, and at most 2 more for the bound with the declines.
            assert abs(cell["accepted_rate"] * cell["handoffs"] - accepted) <= 4.01
        acks = sorted((r.acknowledged_at - r.created_at).total_seconds() / 3600 for r in members if r.acknowledged_at)
        if len(acks) >= k:
            assert cell["median_hours_to_acknowledgement"] == pytest.approx(_percentile(acks, 0.5), abs=0.01)
            assert cell["p90_hours_to_acknowledgement"] == pytest.approx(_percentile(acks, 0.9), abs=0.01)
    assert any(c["masked"] for c in body["cells"])  # the generated data exercises masking
    for measure in (None, "accepted", "declined", "declined_no_capacity"):
        _assert_no_lone_hidden(body["cells"], ["collectivite", "month", "kind"], measure)
    kept = [r for key, members in atoms.items() if len({m.case for m in members}) >= k for r in members]
    assert body["total"]["handoffs"] == published(kept, "handoffs")
    assert body["total"]["cases"] == min(published(kept), published(kept, "handoffs"))
    assert len(body["cells"]) == 100 * 3 * 5  # every collectivité, month and kind

    # A grouping across atoms: every published cell matches, every small one is hidden, and no line of
    # the table has a lone hidden cell that its line total would give away.
    body = await _stats(client, auth("specialist"), group_by=["age_band", "status"])
    band = {11: "10-12", 14: "13-15", 16: "16-17", 18: "18+"}
    expected: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in kept:
        expected[(band[row.age], row.status)].append(row)
    cells = {(c["age_band"], c["status"]): c for c in body["cells"]}
    assert len(cells) == 5 * 10  # every age band and status (entered in error aside)
    hidden = set()
    for key, cell in cells.items():
        if cell["suppressed"]:
            hidden.add(key)
        else:
            assert len({r.case for r in expected[key]}) >= k
            assert cell["handoffs"] == published(expected[key], "handoffs")
            assert cell["cases"] == min(published(expected[key]), cell["handoffs"])
    assert {key for key, members in expected.items() if len({r.case for r in members}) < k} <= hidden
    assert 0 < len(hidden) < len(cells)  # the generated data exercises both sides
    for axis in (0, 1):
        lines: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for key in cells:
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
    def no_capacity(month: str, cases: int, kind: str = "orientation", byte: int | None = None) -> dict[str, Any]:
        return {
            "collectivite": "93D",
            "month": month,
            "kind": kind,
            "cases": cases,
            "status": "declined",
            "decline_reason": "no_capacity",
            "byte": byte,
        }

    await _insert(reader, **no_capacity("2025-01", 12, byte=1))
    # February: a kept atom (23 cases) whose 3 declines for lack of capacity are too few to show.
    await _insert(reader, collectivite="93D", month="2025-02", kind="orientation", cases=20)
    await _insert(reader, **no_capacity("2025-02", 3))
    # March: an atom of 4 cases, left out of every figure, beside 20 IPs declined for lack of capacity.
    await _insert(reader, **no_capacity("2025-03", 4))
    await _insert(reader, **no_capacity("2025-03", 20, kind="information_preoccupante", byte=1))
    headers = auth("department", collectivite="93D")

    async def cells(first: str, last: str) -> list[dict[str, Any]]:
        response = await client.get("/v1/stats/needs", params={"from": first, "to": last}, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["cells"]  # type: ignore[no-any-return]

    both, jan, feb = (
        await cells("2025-01", "2025-02"),
        await cells("2025-01", "2025-01"),
        await cells("2025-02", "2025-02"),
    )
    # These cases named no need: counted (under a null specialism), not dropped.
    assert (
        both
        == jan
        == [
            {
                "collectivite": "93D",
                "specialism": None,
                "empty_searches": None,
                "declined_no_capacity": 12,
                "declined_out_of_territory": None,
                "expired": None,
                "suppressed": ["empty_searches", "declined_out_of_territory", "expired"],
            }
        ]
    )
    # February's 3 declines are under k: nothing is left of February, so it lists no row at all.
    assert feb == []
    # The handoffs of the small atom count in neither endpoint.
    [march] = await cells("2025-03", "2025-03")
    assert march["declined_no_capacity"] == 20
    by_reason = await _stats(
        client,
        headers,
        group_by="decline_reason",
        kind="information_preoccupante",
        **{"from": "2025-03", "to": "2025-03"},
    )
    # 20 handoffs with the noise at their key (20 × 1): 18, and as many cases at most.
    assert [c["cases"] for c in by_reason["cells"] if not c["suppressed"]] == [18]


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/v1/stats/needs", {"from": ["2025-01", "2025-02"]}, "from"),
        ("/v1/stats/needs", {"to": "2025-1"}, "to"),
        ("/v1/stats/coverage", {"within_km": ["5", "50"]}, "within_km"),
        ("/v1/stats/coverage", {"within_km": "101"}, "within_km"),
        ("/v1/stats/coverage", {"within_km": "0"}, "within_km"),
        ("/v1/stats/coverage", {"specialism": "sorcery"}, "specialism"),
        ("/v1/stats/coverage", {"geometry": "true"}, "geometry"),  # the whole country: no map
    ],
)
async def test_bad_needs_and_coverage_requests(
    client: httpx.AsyncClient, specialist: dict[str, str], path: str, params: dict[str, Any], name: str
) -> None:
    response = await client.get(path, params=params, headers=specialist)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["name"] == name


async def test_tables_counted_from_handoffs_stop_where_retention_may_have_deleted(
    client: httpx.AsyncClient, auth, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Rollup tables keep what retention deleted; a table counted from the handoffs would count only what
    is left of those months, and differ from the rollups by the children deleted: it is refused there."""
    monkeypatch.setattr(app.state.settings, "case_retention_years", 3)
    today = datetime.now(UTC).date()
    since = date(today.year - 3 + (today.month == 12), today.month % 12 + 1, 1)
    before = date(since.year - 1, since.month, 1).strftime("%Y-%m")
    headers = auth("specialist")
    period = {"from": before, "to": since.strftime("%Y-%m")}
    for params in ({"group_by": "status"}, {"group_by": "month", "urgency": "routine"}):
        response = await client.get(URL, params={**period, **params}, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["name"] == "from"
        assert f"at {since:%Y-%m} at the earliest" in response.json()["detail"]
    needs = await client.get("/v1/stats/needs", params=period, headers=headers)
    assert needs.status_code == 422
    for params in ({"group_by": ["month", "kind"]}, {"group_by": "collectivite", "kind": "orientation"}):
        response = await client.get(URL, params={**period, **params}, headers=headers)
        assert response.status_code == 200, response.text
    later = {"from": since.strftime("%Y-%m"), "to": since.strftime("%Y-%m"), "group_by": "status"}
    assert (await client.get(URL, params=later, headers=headers)).status_code == 200
