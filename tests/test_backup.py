"""Backups and restores (api/backup.py, `maillage db backup|restore`): a dump restored into a fresh
cluster holds every row of every table, the application role can read it, a backup is private, and a
database that holds tables is never overwritten unless asked, nor left half-restored."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from api.backup import BackupError, BackupReport, RestoreReport, _client_arguments, backup, restore
from api.cli import app
from api.cluster import Cluster, ensure_server_packages
from tests.database import create_test_database, plain

RESTORED = "maillage"  # the name `maillage db restore` uses
CASES = 40

# Rows in tables the template leaves empty, through the real constraints and triggers (the handoff and
# case-event triggers fill handoff_rollup and runaway_case). Text with quotes, accents and NULLs.
FILL = """
INSERT INTO case_record (id, reference, collectivite_code, found_in_commune_code, age, gender, intake_channel,
                         caller, known_to_child_welfare, needs, safe_contact, created_by)
SELECT gen_random_uuid(), 'BK-' || lpad(i::text, 6, '0'), '93D', CASE WHEN i % 4 <> 0 THEN '93066' END,
       i % 18, (ARRAY['female', 'male', 'other'])[1 + i % 3], 'phone', 'minor', 'unknown',
       ARRAY['shelter', 'legal-support'], CASE WHEN i % 5 = 0 THEN 'tante « Zoé », l''après-midi' END,
       'specialist-' || i % 3
  FROM generate_series(1, {cases}) AS i;

INSERT INTO handoff (id, case_id, collectivite_code, sender_organisation_id, receiver_organisation_id, kind,
                     beneficiary, urgency, legal_basis, reason, acknowledge_by, created_at, created_by)
SELECT gen_random_uuid(), c.id, c.collectivite_code,
       (SELECT id FROM organisation WHERE seed_key = 'hotline:119'),
       (SELECT id FROM organisation WHERE kind = 'crip' AND collectivite_code = '93D'),
       'information_preoccupante', 'minor', 'within_24h', 'child_protection_duty', 'Élève signalé d''urgence',
       c.opened_at + interval '1 day', c.opened_at - (c.stat_no || ' days')::interval, c.created_by
  FROM case_record c;

INSERT INTO handoff_event (handoff_id, case_id, collectivite_code, to_status, actor_subject, actor_role)
SELECT id, case_id, collectivite_code, 'sent', created_by, 'specialist' FROM handoff;

INSERT INTO handoff_assignee (collectivite_code, handoff_id, issuer, subject, added_by_issuer, added_by)
SELECT collectivite_code, id, 'https://login.example.test', 'agent-93', '', created_by FROM handoff;

INSERT INTO case_event (case_id, collectivite_code, kind, occurred_at, note, actor_subject, actor_role)
SELECT id, collectivite_code, 'runaway_started', opened_at - interval '3 hours', NULL, created_by, 'specialist'
  FROM case_record WHERE stat_no % 2 = 0;

INSERT INTO audit_event (actor_subject, actor_role, action, object_type, object_id, case_id, outcome, status_code)
SELECT created_by, 'specialist', 'case.read', 'case', id, id, 'allowed', 200 FROM case_record;

INSERT INTO identity_binding (id, issuer, claim, value, role, collectivite_code, created_by)
VALUES (gen_random_uuid(), 'https://login.example.test', 'groups', 'crip-93', 'department', '93D', 'test');

INSERT INTO api_client (id, name, role, secret_hash)
VALUES (gen_random_uuid(), 'système partenaire', 'specialist', '$argon2id$not-a-real-hash');
"""
FILLED = (
    "case_record",
    "handoff",
    "handoff_event",
    "handoff_assignee",
    "case_event",
    "audit_event",
    "identity_binding",
    "api_client",
    "handoff_rollup",
    "runaway_case",
)

# Every table of a database, from the catalog (not the module's own list): all schemas but the catalogs.
TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_%'
"""


@pytest.fixture(scope="module")
def bindir() -> Path:
    return ensure_server_packages()


@pytest.fixture(scope="module")
def source(cluster: Cluster) -> Iterator[str]:
    """A clone of the test template with rows in the tables it leaves empty."""
    name = create_test_database(cluster, suffix="_backup")
    try:
        with psycopg.connect(plain(cluster.url(name))) as conn:
            conn.execute(sql.SQL(FILL).format(cases=CASES))
        yield name
    finally:
        cluster.drop_database(name)


@pytest.fixture(scope="module")
def dump(
    cluster: Cluster, source: str, bindir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackupReport]:
    directory = tmp_path_factory.mktemp("backup")
    try:
        yield backup(cluster.url(source), directory / "new-dir" / "source.dump", bindir=bindir)
    finally:
        shutil.rmtree(directory)


@pytest.fixture(scope="module")
def small_dump(cluster: Cluster, bindir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackupReport]:
    """A dump of a database of one small table: what the refusal and failure paths need, restored in
    a moment rather than the seconds of the full one."""
    name = f"maillage_test_{os.getpid()}_backup_small"
    cluster.drop_database(name)
    cluster.ensure_database(name)
    directory = tmp_path_factory.mktemp("small")
    try:
        with psycopg.connect(plain(cluster.url(name))) as conn:
            conn.execute("CREATE TABLE handed (n int, label text)")
            conn.execute("INSERT INTO handed SELECT n, 'é' || n FROM generate_series(1, 500) n")
        yield backup(cluster.url(name), directory / "small.dump", bindir=bindir)
    finally:
        cluster.drop_database(name)
        shutil.rmtree(directory)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of its own, initialised for this module, and gone after it whatever happens."""
    cluster = Cluster(tmp_path_factory.mktemp("fresh") / "var")
    try:
        cluster.start()
        yield cluster
    finally:
        _discard(cluster)


def _discard(cluster: Cluster) -> None:
    """Stop the cluster (killing its postmaster if a clean stop fails) and delete its data and secrets."""
    try:
        cluster.stop()
    except Exception:
        pid_file = cluster.data_dir / "postmaster.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)  # immediate shutdown
        raise
    finally:
        outside = cluster.base.parent
        if outside.parent == Path("/var/tmp") and outside.name.startswith("maillage-"):
            shutil.rmtree(outside, ignore_errors=True)
        shutil.rmtree(cluster.var_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def restored(fresh: Cluster, dump: BackupReport, bindir: Path) -> RestoreReport:
    return restore(fresh, RESTORED, dump.path, bindir=bindir)


@pytest.fixture
def occupied(fresh: Cluster) -> Iterator[str]:
    """A database of the fresh cluster holding one table of three rows."""
    name = "occupied"
    fresh.ensure_database(name)
    with psycopg.connect(plain(fresh.url(name))) as conn:
        conn.execute("CREATE TABLE keep (n int); INSERT INTO keep VALUES (1), (2), (3)")
    try:
        yield name
    finally:
        fresh.drop_database(name)


def _digests(url: str, *, content: bool = True) -> dict[str, tuple[int, str | None]]:
    """Per table: its rows and a digest of their content, independent of their physical order."""
    digest = sql.SQL("md5(string_agg(md5(r::text), '' ORDER BY md5(r::text)))" if content else "NULL")
    with psycopg.connect(plain(url)) as conn:
        conn.execute("SET TimeZone = 'UTC'")  # timestamptz text depends on it
        digests = {}
        for schema, table in conn.execute(TABLES).fetchall():
            query = sql.SQL("SELECT count(*), {} FROM {} r").format(digest, sql.Identifier(schema, table))
            row = conn.execute(query).fetchone()
            assert row is not None
            digests[f"{schema}.{table}"] = (row[0], row[1])
        return digests


def _sequences(url: str) -> dict[str, int | None]:
    with psycopg.connect(plain(url)) as conn:
        return dict(conn.execute("SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences").fetchall())


def _rows(url: str) -> dict[str, int]:
    return {table: rows for table, (rows, _) in _digests(url, content=False).items()}


def _databases(cluster: Cluster) -> set[str]:
    with psycopg.connect(plain(cluster.url("postgres"))) as conn:
        return {name for (name,) in conn.execute("SELECT datname FROM pg_database").fetchall()}


def test_a_restore_into_a_fresh_cluster_holds_every_row_of_every_table(
    cluster: Cluster, source: str, dump: BackupReport, fresh: Cluster, restored: RestoreReport
) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        before, after = pool.map(_digests, [cluster.url(source), fresh.url(RESTORED)])
    assert all(before[f"public.{table}"][0] > 0 for table in FILLED), before
    assert before["public.case_record"][0] == CASES
    assert after == before
    assert _sequences(fresh.url(RESTORED)) == _sequences(cluster.url(source))
    counts = {table: rows for table, (rows, _) in before.items()}
    assert dict(dump.rows) == counts
    assert dict(restored.rows) == counts
    assert restored.replaced is False
    assert f"{RESTORED}__restoring" not in _databases(fresh)


def test_the_application_role_reads_the_restored_database(fresh: Cluster, restored: RestoreReport) -> None:
    with psycopg.connect(plain(fresh.app_url(RESTORED))) as conn:
        user, cases = conn.execute("SELECT current_user, (SELECT count(*) FROM case_record)").fetchone() or ()
    assert (user, cases) == ("maillage_app", CASES)


def test_a_backup_is_private_and_complete_under_its_name(dump: BackupReport) -> None:
    assert dump.path.stat().st_mode & 0o777 == 0o600
    assert dump.path.parent.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in dump.path.parent.iterdir()] == ["source.dump"]  # no partial file left
    assert dump.size == dump.path.stat().st_size > 0
    assert dump.path.read_bytes()[:5] == b"PGDMP"  # the custom format


def test_passwords_go_to_the_environment_never_to_the_command_line() -> None:
    """`ps` shows every process's arguments to every local user; its environment only to its owner."""
    args, env = _client_arguments("postgresql+psycopg://owner:s3cr%C3%A9t@db.internal:6432/maillage?sslmode=require")
    assert env["PGPASSWORD"] == "s3crét"
    assert not any("s3cr" in arg for arg in args)
    assert args == [
        "--no-password",
        "-h",
        "db.internal",
        "-p",
        "6432",
        "-U",
        "owner",
        "-d",
        "dbname=maillage sslmode=require",
    ]


def test_a_backup_never_overwrites_another(cluster: Cluster, source: str, dump: BackupReport, bindir: Path) -> None:
    before = dump.path.read_bytes()
    with pytest.raises(BackupError, match="never overwrites"):
        backup(cluster.url(source), dump.path, bindir=bindir)
    assert dump.path.read_bytes() == before


def test_a_database_with_tables_is_kept_unless_replace_is_asked(
    fresh: Cluster, occupied: str, small_dump: BackupReport, bindir: Path
) -> None:
    with pytest.raises(BackupError, match="already holds 1 tables: nothing was changed"):
        restore(fresh, occupied, small_dump.path, bindir=bindir)
    assert _rows(fresh.url(occupied)) == {"public.keep": 3}

    report = restore(fresh, occupied, small_dump.path, bindir=bindir, replace=True)
    assert report.replaced is True
    assert dict(report.rows) == dict(small_dump.rows) == _rows(fresh.url(occupied)) == {"public.handed": 500}


def test_a_failed_restore_leaves_the_database_as_it_was(
    fresh: Cluster, occupied: str, dump: BackupReport, bindir: Path, tmp_path: Path
) -> None:
    """Cut short, the dump fails midway through its data: the one transaction rolls back and the scratch
    database goes, so even with replace the existing database is untouched."""
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(dump.path.read_bytes()[: dump.size // 3])
    with pytest.raises(BackupError, match="pg_restore failed; database 'occupied' was left as it was"):
        restore(fresh, occupied, truncated, bindir=bindir, replace=True)
    assert _rows(fresh.url(occupied)) == {"public.keep": 3}
    assert f"{occupied}__restoring" not in _databases(fresh)


def test_the_cli_backs_up_the_local_database_and_refuses_to_restore_over_it(
    fresh: Cluster, restored: RestoreReport, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAILLAGE_VAR_DIR", str(fresh.var_dir))
    for name in ("DATABASE_URL", "MAILLAGE_DATABASE_URL", "MAILLAGE_OWNER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    summary = f"{len(restored.rows)} tables, {sum(restored.rows.values())} rows"

    local = runner.invoke(app, ["db", "backup"])
    assert local.exit_code == 0, local.output
    (written,) = (fresh.var_dir / "backups").glob("maillage-*.dump")
    assert f"wrote {written}:" in local.output
    assert summary in local.output
    assert written.stat().st_mode & 0o777 == 0o600
    assert written.parent.stat().st_mode & 0o777 == 0o700

    refused = runner.invoke(app, ["db", "restore", str(written)])
    assert refused.exit_code == 1
    assert f"database '{RESTORED}' already holds" in refused.output
    assert _rows(fresh.url(RESTORED)) == dict(restored.rows)

    # With DATABASE_URL set, the backup is taken through the owner's URL: the API's one here would not
    # even log in. A restore there is left to the operator.
    monkeypatch.setenv("DATABASE_URL", fresh.app_url(RESTORED).replace("@127.0.0.1", "-wrong@127.0.0.1"))
    monkeypatch.setenv("MAILLAGE_OWNER_DATABASE_URL", fresh.url(RESTORED))
    remote = runner.invoke(app, ["db", "backup", str(tmp_path / "owner.dump")])
    assert remote.exit_code == 0, remote.output
    assert summary in remote.output
    assert (tmp_path / "owner.dump").stat().st_mode & 0o777 == 0o600

    elsewhere = runner.invoke(app, ["db", "restore", str(written)])
    assert elsewhere.exit_code == 1
    assert "pg_restore --single-transaction --exit-on-error" in elsewhere.output
