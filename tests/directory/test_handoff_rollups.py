"""The handoff rollups answer exactly what the handoffs answer.

Every table the rollups serve (any grouping among collectivité, month and kind, with the totals over
any fewer of them; national or two collectivités; k of 1 and 4) is compared cell for cell — true
counts, perturbation keys, percentiles — with the statement over the handoffs (`stats._scan`, the
reference), on generated pathways: every status, unknown decline reasons, late, early and missing
acknowledgements, deadlines on both sides of the moment of reading, Paris month edges, runaways.
Then again after the writes that move figures (transitions, entered in error, a case moving to
another collectivité, a multi-atom statement), after a rebuild, through retention (months whose
cases are deleted still count, and what stays leads back to no case), with writers of the same atoms
committing at once; and the application role only reads.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from itertools import combinations
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from directory import handoff_rollups, retention, stats
from directory.pathway_models import HandoffKind, HandoffStatus
from tests.database import plain

NOW = datetime(2025, 7, 1, 9, 30, tzinfo=UTC)
START, END = date(2025, 1, 1), date(2025, 7, 1)
COLLECTIVITES = ("75C", "93D", "69M")
KINDS = [kind.value for kind in HandoffKind]
STATUSES = [status.value for status in HandoffStatus]
REASONS = [*stats.DECLINE_REASONS, "something_else", None]
DIMS = ("collectivite", "month", "kind")
HANDOFF_COLUMNS = (
    "id uuid, case_id uuid, collectivite_code text, sender_organisation_id uuid, receiver_organisation_id uuid, "
    "kind text, status text, acknowledge_by timestamptz, acknowledged_at timestamptz, accepted_at timestamptz, "
    "decline_reason text, created_at timestamptz"
)


async def _one(conn: AsyncConnection, sql: str, params: Any = None) -> Any:
    row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None
    return row[0]


def _handoff(rng: random.Random, case: uuid.UUID, collectivite: str, start: datetime, days: int) -> dict[str, Any]:
    """One handoff of any status, created within `days` of `start` (often at a Paris month's edge)."""
    if days > 62 and rng.random() < 0.15:  # 23:00–23:59 UTC on a month's last day: the next month in Paris
        month = rng.randrange(days // 31)
        first = (start + timedelta(days=31 * month + 31)).replace(day=1)
        created = first - timedelta(minutes=rng.randint(1, 59))
    else:
        created = start + timedelta(seconds=rng.randrange(days * 86400))
    status = rng.choice(STATUSES)
    due = created + timedelta(hours=rng.choice([1, 24, 24 * 7, 24 * 200]))
    acknowledged = None
    if status not in ("sent", "expired") or rng.random() < 0.2:
        acknowledged = created + timedelta(hours=rng.uniform(0, 300))
    accepted = None
    if acknowledged is not None and status in ("accepted", "in_progress", "on_hold", "completed", "failed"):
        accepted = acknowledged + timedelta(hours=rng.uniform(0, 100))
    reason = rng.choice(REASONS) if status == "declined" or rng.random() < 0.05 else None
    return {
        "id": str(uuid.uuid4()),
        "case_id": str(case),
        "collectivite_code": collectivite,
        "kind": rng.choice(KINDS),
        "status": status,
        "acknowledge_by": due.isoformat(),
        "acknowledged_at": acknowledged and acknowledged.isoformat(),
        "accepted_at": accepted and accepted.isoformat(),
        "decline_reason": reason,
        "created_at": created.isoformat(),
    }


INSERT_HANDOFFS = f"""
    INSERT INTO handoff (id, case_id, collectivite_code, sender_organisation_id, receiver_organisation_id, kind,
                         beneficiary, urgency, legal_basis, status, acknowledge_by, acknowledged_at, accepted_at,
                         decline_reason, created_at, created_by)
    SELECT id, case_id, collectivite_code, sender_organisation_id, receiver_organisation_id, kind, 'minor', 'routine',
           'child_protection_duty', status, acknowledge_by, acknowledged_at, accepted_at, decline_reason, created_at,
           'rollup-test'
      FROM jsonb_to_recordset(%(rows)s::jsonb) AS x({HANDOFF_COLUMNS})"""
INSERT_CASE = """
    INSERT INTO case_record (id, reference, collectivite_code, age, intake_channel, caller, known_to_child_welfare,
                             created_by, status, closed_at)
    VALUES (%(id)s, %(reference)s, %(collectivite)s, 14, 'phone', 'parent', 'unknown', 'rollup-test',
            %(status)s, %(closed_at)s)"""
INSERT_RUNAWAY = """
    INSERT INTO case_event (case_id, collectivite_code, kind, occurred_at, actor_subject, actor_role)
    VALUES (%(case)s, %(collectivite)s, 'runaway_started', %(at)s, 'rollup-test', 'specialist')"""
ORGANISATIONS = """
    SELECT (SELECT id FROM organisation WHERE seed_key = 'hotline:119'),
           (SELECT id FROM organisation WHERE kind = 'crip' ORDER BY seed_key LIMIT 1)"""


def _case(collectivite: str, *, closed_at: datetime | None = None) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "reference": uuid.uuid4().hex[:12],
        "collectivite": collectivite,
        "status": "closed" if closed_at else "open",
        "closed_at": closed_at,
    }


def _rows(rows: list[dict[str, Any]], organisations: tuple[Any, Any]) -> dict[str, str]:
    sender, receiver = (str(o) for o in organisations)
    parties = {"sender_organisation_id": sender, "receiver_organisation_id": receiver}
    return {"rows": json.dumps([row | parties for row in rows])}


async def _insert_handoffs(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """In one statement: the trigger then refreshes every atom they touch at once."""
    organisations = await (await conn.execute(ORGANISATIONS)).fetchone()
    assert organisations is not None
    await conn.execute(INSERT_HANDOFFS, _rows(rows, organisations))


async def _insert_case(conn: AsyncConnection, collectivite: str) -> uuid.UUID:
    case = _case(collectivite)
    await conn.execute(INSERT_CASE, case)
    return uuid.UUID(str(case["id"]))


async def _generate(conn: AsyncConnection, seed: int, cases: int = 150) -> list[uuid.UUID]:
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    made, rows = [], []
    for _ in range(cases):
        collectivite = rng.choice(COLLECTIVITES)
        case = await _insert_case(conn, collectivite)
        made.append(case)
        rows += [_handoff(rng, case, collectivite, start, 180) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.3:
            at = start + timedelta(days=rng.randrange(180))
            await conn.execute(INSERT_RUNAWAY, {"case": case, "collectivite": collectivite, "at": at})
    await _insert_handoffs(conn, rows[: len(rows) // 2])
    for row in rows[len(rows) // 2 :]:  # one statement each
        await _insert_handoffs(conn, [row])
    return made


def _key(dims: tuple[str, ...]) -> Any:
    return lambda record: (record.get("detail", True), *((record[d] is None, record[d] or "") for d in dims))


async def _assert_same(conn: AsyncConnection, now: datetime = NOW, *, with_totals: bool = True) -> dict[str, Any]:
    """Every served table equal to the reference, alone and (`with_totals`) with the totals over fewer
    dimensions in the same pass; returns the national table by month × kind at k=1 and the national
    totals."""
    national: dict[str, Any] = {}
    for collectivites in (None, ["75C", "93D"]):
        for k in (1, 4):
            for size in range(len(DIMS) + 1):
                for dims in combinations(DIMS, size):
                    query = stats.Query(collectivites, START, END, group_by=dims, k=k)
                    every = with_totals and k == 1  # the atoms left out are the same with or without totals
                    subsets = [list(t) for n in range(size) for t in combinations(dims, n)] if every else []
                    for totals in [None, *subsets]:
                        reference = await stats._scan(conn, query, list(dims), now, totals_over=totals)
                        rolled = await stats._scan_rollups(conn, query, list(dims), now, totals_over=totals)
                        assert sorted(rolled, key=_key(dims)) == sorted(reference, key=_key(dims)), (
                            collectivites,
                            k,
                            dims,
                            totals,
                        )
                        if collectivites is None and k == 1 and dims == ("month", "kind") and totals == []:
                            national["cells"] = [r for r in rolled if r["detail"]]
                            assert [r for r in rolled if not r["detail"]] != []
                    if collectivites is None and dims == ():
                        national[f"total_k{k}"] = rolled[0]
    return national


async def test_the_rollups_answer_what_the_handoffs_answer(owner: AsyncConnection) -> None:
    await _generate(owner, seed=119)
    national = await _assert_same(owner)
    # Not a comparison of two empty answers: every measure has something to compare.
    total = national["total_k1"]
    assert total["handoffs"] > 300
    assert 100 < total["cases"] < total["handoffs"]
    assert total["runaway_cases"] > 10
    assert total["runaway_cases_key"] > 0
    assert total["declined"] > 0
    assert total["declined_other"] > 0
    assert total["failed"] > 0
    assert total["median_hours_to_acknowledgement"] is not None
    assert total["p90_hours_to_acceptance"] is not None
    assert national["total_k4"]["handoffs"] < total["handoffs"]  # atoms under 4 cases left out
    assert len(national["cells"]) > 20
    # Overdue depends on the moment: unacknowledged deadlines lie on both sides of NOW.
    earlier = await stats._scan_rollups(owner, stats.Query(None, START, END, (), k=1), [], NOW - timedelta(days=30))
    assert 0 < earlier[0]["overdue"] < total["overdue"]
    await _assert_same(owner, NOW - timedelta(days=30), with_totals=False)


async def test_writes_keep_the_rollups_exact(owner: AsyncConnection) -> None:
    cases = await _generate(owner, seed=7)
    rng = random.Random(8)
    # Transitions, one statement each, as the API makes them.
    handoffs = [row[0] for row in await (await owner.execute("SELECT id FROM handoff ORDER BY id")).fetchall()]
    for handoff in rng.sample(handoffs, 40):
        status = rng.choice(STATUSES)
        await owner.execute(
            """UPDATE handoff SET status = %s, decline_reason = %s,
                      acknowledged_at = coalesce(acknowledged_at, created_at + interval '5 hours'),
                      accepted_at = CASE WHEN %s IN ('accepted', 'completed') THEN created_at + interval '9 hours'
                                         ELSE accepted_at END
                WHERE id = %s""",
            (status, rng.choice(REASONS) if status == "declined" else None, status, handoff),
        )
    # A case that ran away moves to another collectivité: its handoffs and events follow (ON UPDATE
    # CASCADE), and so does its runaway.
    moved = await _one(owner, "SELECT collectivite_code FROM case_record WHERE id = %s", (cases[0],))
    await owner.execute(INSERT_RUNAWAY, {"case": cases[0], "collectivite": moved, "at": NOW - timedelta(days=3)})
    await owner.execute(
        "UPDATE case_record SET collectivite_code = %s WHERE id = %s", ("93D" if moved == "69M" else "69M", cases[0])
    )
    # Many atoms in one statement.
    await owner.execute("UPDATE handoff SET status = 'entered_in_error' WHERE id = ANY(%s)", (handoffs[:25],))
    await owner.execute(
        "UPDATE handoff SET acknowledge_by = acknowledge_by + interval '30 days' WHERE acknowledged_at IS NULL"
    )
    # A handoff whose kind (or id) changes leaves its old atom too.
    await owner.execute(
        "UPDATE handoff SET kind = 'signalement' WHERE id = %s AND kind <> 'signalement'", (handoffs[30],)
    )
    await owner.execute("UPDATE handoff SET id = gen_random_uuid() WHERE id = %s", (handoffs[31],))
    await _assert_same(owner)
    # A rebuild writes the same rows.
    await owner.execute("SELECT handoff_rollup_flush()")  # what commit would do
    stored = await (await owner.execute("SELECT * FROM handoff_rollup ORDER BY 1, 2, 3, 4")).fetchall()
    assert len(stored) > 50
    await owner.execute("DELETE FROM handoff_rollup")
    assert await _one(owner, "SELECT handoff_rollup_rebuild()") == len(stored)
    assert await (await owner.execute("SELECT * FROM handoff_rollup ORDER BY 1, 2, 3, 4")).fetchall() == stored


def test_the_rebuild_command_rewrites_the_rollups(owner_url: str) -> None:
    with psycopg.connect(plain(owner_url)) as conn:
        before = conn.execute("SELECT count(*) FROM handoff_rollup WHERE NOT archived").fetchone()
        conn.execute("DELETE FROM handoff_rollup WHERE NOT archived")
        written = handoff_rollups.rebuild(conn)  # its own savepoint inside this transaction
        after = conn.execute("SELECT count(*) FROM handoff_rollup WHERE NOT archived").fetchone()
        assert before is not None
        assert after is not None
        assert written == after[0] == before[0]
        assert (
            written
            == conn.execute(
                "SELECT count(*) FROM (SELECT DISTINCT collectivite_code, created_month, kind FROM handoff"
                " WHERE status <> 'entered_in_error') atoms"
            ).fetchone()[0]
        )  # type: ignore[index]
        conn.rollback()


def _national(conn: psycopg.Connection, start: date, end: date, *, k: int = 1) -> list[dict[str, Any]]:
    conn.execute("SELECT handoff_rollup_flush()")  # as handoff_rollups.scan does
    cursor = conn.execute(
        handoff_rollups.statement(["month", "kind"], territorial=False),
        {"start": start, "end": end, "k": k, "now": NOW, "collectivites": None},
    )
    names = [column.name for column in cursor.description or ()]
    return sorted((dict(zip(names, row, strict=True)) for row in cursor.fetchall()), key=_key(("month", "kind")))


def test_months_emptied_by_retention_still_count(owner_url: str) -> None:
    """Cases closed long ago are deleted with their handoffs and events; their months keep every figure
    (runaways included), and a handoff added later to one of their atoms counts beside them."""
    old_start, old_end = date(2020, 1, 1), date(2020, 7, 1)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    rng = random.Random(2020)
    with psycopg.connect(plain(owner_url)) as conn:
        organisations = conn.execute(ORGANISATIONS).fetchone()
        rows, cases = [], []
        for _ in range(40):
            case = _case(rng.choice(COLLECTIVITES), closed_at=datetime(2021, 1, 1, tzinfo=UTC))
            conn.execute(INSERT_CASE, case)
            cases.append(case["id"])
            rows += [_handoff(rng, case["id"], case["collectivite"], start, 180) for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.4:
                conn.execute(INSERT_RUNAWAY, {"case": case["id"], "collectivite": case["collectivite"], "at": start})
        kept = _case("75C")  # open: retention keeps it
        conn.execute(INSERT_CASE, kept)
        rows.append(_handoff(rng, kept["id"], "75C", start, 180) | {"kind": "orientation", "status": "accepted"})
        conn.execute(INSERT_HANDOFFS, _rows(rows, organisations))
        conn.execute(  # someone worked the case through that handoff: retention deletes that too
            """INSERT INTO handoff_assignee (collectivite_code, handoff_id, issuer, subject, added_by_issuer, added_by)
               VALUES (%s, %s, 'https://maillage.local', 'specialist-2', 'https://maillage.local', 'specialist-1')""",
            (rows[0]["collectivite_code"], rows[0]["id"]),
        )
        before = {k: _national(conn, old_start, old_end, k=k) for k in (1, 4)}
        assert sum(cell["runaway_cases"] for cell in before[1]) > 0
        assert before[4] != before[1]  # some atoms under 4 cases: left out the same way after retention

        report = retention.apply(conn, now=datetime(2026, 12, 3, tzinfo=UTC), case_years=3, audit_days=365)

        assert report.cases >= 40
        assert report.handoffs == len(rows) - 1
        assert conn.execute("SELECT count(*) FROM case_record WHERE id = ANY(%s)", (cases,)).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM case_event WHERE case_id = ANY(%s)", (cases,)).fetchone() == (0,)
        left = "SELECT count(*) FROM handoff WHERE created_month >= %s AND created_month < %s"
        assert conn.execute(left, (old_start, old_end)).fetchone() == (1,)  # the open case's
        for k in (1, 4):
            _assert_kept(_national(conn, old_start, old_end, k=k), before[k])
        # What stays leads back to no case: new numbers (negative, apart from every live one), runaways
        # under them, no deadline, hours to the minute.
        archived = conn.execute(
            """SELECT count(*), bool_and(no < 0), bool_and(no <> ALL(SELECT stat_no FROM case_record)),
                      sum(cardinality(pending_due)), bool_and(abs(h * 60 - round(h * 60)) < 1e-9)
                 FROM handoff_rollup, unnest(case_nos) no, unnest(ack_hours || accept_hours) h WHERE archived"""
        ).fetchone()
        assert archived is not None
        assert archived[0] > 0
        assert archived[1:] == (True, True, 0, True)
        assert conn.execute("SELECT count(*) FROM runaway_case WHERE stat_no < 0").fetchone()[0] > 0  # type: ignore[index]
        # The live part is recomputed from what is left; the archived part stays.
        conn.execute("SELECT handoff_rollup_rebuild()")
        _assert_kept(_national(conn, old_start, old_end), before[1])
        # One more case in an archived atom counts beside the deleted ones.
        cell = next(c for c in before[1] if c["handoffs"] > 0)
        later = _case("93D")
        conn.execute(INSERT_CASE, later)
        created = datetime(cell["month"].year, cell["month"].month, 10, tzinfo=UTC)
        row = _handoff(rng, later["id"], "93D", created, 1) | {"kind": cell["kind"], "created_at": created.isoformat()}
        conn.execute(INSERT_HANDOFFS, _rows([row], organisations))
        after = {(c["month"], c["kind"]): c for c in _national(conn, old_start, old_end)}
        assert after[(cell["month"], cell["kind"])]["cases"] == cell["cases"] + 1
        assert after[(cell["month"], cell["kind"])]["handoffs"] == cell["handoffs"] + 1
        conn.rollback()


PERCENTILES = {f"{s}_hours_to_{w}" for s in ("median", "p90") for w in ("acknowledgement", "acceptance")}


def _assert_kept(after: list[dict[str, Any]], before: list[dict[str, Any]]) -> None:
    """The same figures, the durations within the half minute they were rounded to."""
    assert [{k: v for k, v in c.items() if k not in PERCENTILES} for c in after] == [
        {k: v for k, v in c.items() if k not in PERCENTILES} for c in before
    ]
    for new, old in zip(after, before, strict=True):
        for name in PERCENTILES:
            assert (new[name] is None) == (old[name] is None)
            assert new[name] is None or abs(new[name] - old[name]) <= 1 / 120 + 1e-9


async def test_writers_of_the_same_atoms_all_count_and_never_deadlock(owner_url: str) -> None:
    """Two transactions each write two atoms, in opposite orders and in separate statements, then commit
    at once: each recomputes its atoms at commit, in one order, after the other — both succeed (they
    used to deadlock) and the rollups count every handoff."""
    first = await psycopg.AsyncConnection.connect(plain(owner_url))
    second = await psycopg.AsyncConnection.connect(plain(owner_url))
    created = datetime(2019, 5, 10, tzinfo=UTC)  # a month no other test uses
    rng = random.Random(5)
    made: list[uuid.UUID] = []
    atom = "collectivite_code = '93D' AND month = '2019-05-01' AND NOT archived AND kind = %s"
    try:
        for conn, kinds in ((first, ("orientation", "signalement")), (second, ("signalement", "orientation"))):
            for kind in kinds:
                case = await _insert_case(conn, "93D")
                made.append(case)
                row = _handoff(rng, case, "93D", created, 1) | {"kind": kind, "created_at": created.isoformat()}
                await _insert_handoffs(conn, [row])  # one statement each
        await asyncio.wait_for(asyncio.gather(first.commit(), second.commit()), timeout=30)
        for kind in ("orientation", "signalement"):
            found = "SELECT handoffs, cardinality(case_nos) FROM handoff_rollup WHERE " + atom
            assert await (await first.execute(found, (kind,))).fetchone() == (2, 2)
        await first.commit()
    finally:
        for conn in (first, second):
            await conn.rollback()
        await first.execute("DELETE FROM handoff WHERE case_id = ANY(%s)", (made,))
        await first.execute("DELETE FROM case_record WHERE id = ANY(%s)", (made,))
        await first.commit()
        assert await _one(first, "SELECT count(*) FROM handoff_rollup WHERE month = '2019-05-01'") == 0
        await first.close()
        await second.close()


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT handoff_rollup_rebuild()",
        "SELECT handoff_rollup_archive(ARRAY[]::uuid[])",
        "SELECT handoff_rollup_refresh(ARRAY['75C'], ARRAY['2025-01-01'::date], ARRAY['orientation'])",
        "SELECT handoff_rollup_lock(ARRAY['75C'], ARRAY['2025-01-01'::date], ARRAY['orientation'])",
        "SELECT * FROM handoff_rollup_of(ARRAY['75C'], ARRAY['2025-01-01'::date], ARRAY['orientation'], NULL, false)",
        "DELETE FROM handoff_rollup",
        "INSERT INTO runaway_case VALUES (1, '75C')",
        "UPDATE handoff_rollup SET handoffs = handoffs + 1",
    ],
)
async def test_the_application_role_only_reads_rollups(reader: AsyncConnection, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await reader.execute(statement)


async def test_a_case_number_never_changes(reader: AsyncConnection) -> None:
    case = await _insert_case(reader, "93D")
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="cannot change"):
        await reader.execute("UPDATE case_record SET stat_no = DEFAULT WHERE id = %s", (case,))


def test_case_numbers_are_never_published() -> None:
    from api.settings import REPO_ROOT

    assert "stat_no" not in (REPO_ROOT / "openapi" / "openapi.json").read_text()
