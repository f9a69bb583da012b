"""Logical backups of one database, and their restore into the local cluster.

Why `pg_dump --format=custom`:
- it copies one database (the application's), not a whole cluster with every other database in it;
- it is portable across PostgreSQL major versions (a newer pg_restore reads it), so the same file is the
  upgrade path from one major version to the next;
- it is compressed, and pg_restore can restore it selectively (`--list`, `--use-list`, `--table`).

It is not point-in-time recovery: a dump is the database as of the moment it started. Production's
recovery path is pg_basebackup plus WAL archiving, documented separately; that copies a whole cluster
and restores only onto the same major version.

A dump holds case data about children. The file is created mode 0600 (never a moment readable by
others), a directory we create for it 0700, and a backup appears under its final name only once it is
complete. Passwords never reach a command line, where `ps` shows them to every local user: libpq reads
them from PGPASSWORD in the child's environment.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .cluster import Cluster, ClusterError

# The tables of the database: every schema but the catalogs. Leaf tables only (relkind 'r'), so that
# rows of a partitioned table are counted once, in their partitions.
_TABLES = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relpersistence <> 't'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
 ORDER BY 1, 2
"""
_MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1
StrPath = str | os.PathLike[str]


class BackupError(ClusterError):
    """A backup or restore was refused or failed; the message says why, and what was left as it was."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    size: int  # bytes
    seconds: float
    rows: Mapping[str, int]  # schema.table -> rows in the dump (counted in the snapshot pg_dump used)


@dataclass(frozen=True)
class RestoreReport:
    database: str
    seconds: float
    rows: Mapping[str, int]  # schema.table -> rows in the restored database
    replaced: bool  # an existing database with tables was replaced


def default_path(var_dir: Path, now: datetime) -> Path:
    """var/backups/maillage-<UTC timestamp>.dump: sorts by date, never collides within a second."""
    return var_dir / "backups" / f"maillage-{now:%Y%m%dT%H%M%SZ}.dump"


# --- backup -----------------------------------------------------------------------------------


def backup(url: str, path: StrPath, *, bindir: Path) -> BackupReport:
    """Dump the database of `url` (a libpq or SQLAlchemy URL) to `path` with the pg_dump of `bindir`.

    The row counts are taken in the very snapshot pg_dump dumps (exported, then passed with
    --snapshot), so they are what the file holds, not what the tables held a moment before or after."""
    args, env = _client_arguments(url)
    path = Path(path).absolute()
    if path.exists():
        raise BackupError(f"{path} exists: a backup never overwrites another one")
    _private_directory(path.parent)
    started = time.monotonic()
    # zlib level 1: most of the bytes are geometries, which higher levels barely shrink. Measured on the
    # test template (139 MB): level 1 writes 28 MB in 1.8 s, the default level 6 26 MB in 4.3 s.
    with _exported_snapshot(url) as (snapshot, rows), _partial_file(path) as (partial, handle):
        _check(
            subprocess.run(  # noqa: S603 - fixed argv, no shell
                [str(bindir / "pg_dump"), *args, "--format=custom", "--compress=1", f"--snapshot={snapshot}"],
                stdout=handle,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                check=False,
            ),
            f"pg_dump failed; no backup was written to {path}",
        )
        os.fsync(handle)
        if path.exists():
            raise BackupError(f"{path} appeared while dumping: a backup never overwrites another one")
        os.replace(partial, path)
    _fsync_directory(path.parent)
    return BackupReport(path=path, size=path.stat().st_size, seconds=time.monotonic() - started, rows=rows)


def _private_directory(directory: Path) -> None:
    """Create the backup directory 0700 when it is missing; an existing one is the operator's to judge."""
    if directory.exists():
        return
    directory.mkdir(parents=True)
    directory.chmod(0o700)  # mkdir's mode goes through the umask


@contextlib.contextmanager
def _partial_file(path: Path) -> Iterator[tuple[Path, int]]:
    """A 0600 file beside `path` (same file system, so the final rename is atomic), removed unless the
    caller renamed it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        yield partial, handle
    finally:
        os.close(handle)
        partial.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextlib.contextmanager
def _exported_snapshot(url: str) -> Iterator[tuple[str, dict[str, int]]]:
    """A repeatable-read snapshot kept open while pg_dump runs in it, and the row counts it sees."""
    try:
        conn = psycopg.connect(_libpq(url))
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot reach the database to back it up: {exc}") from None
    with conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        yield str(row[0]), table_rows(conn)


# --- restore ----------------------------------------------------------------------------------


def restore(cluster: Cluster, database: str, path: StrPath, *, bindir: Path, replace: bool = False) -> RestoreReport:
    """Restore the dump at `path` into `database` of the local `cluster`, as its superuser.

    A database that holds tables is refused unless `replace`. The dump is restored into a scratch
    database in one transaction and renamed into place only once it succeeded: a failed restore leaves
    the existing database as it was (replace or not) and no half-restored one behind.

    Objects end up owned by the superuser (`--no-owner`: the source's owner role need not exist here, and
    the local cluster's schema owner is the superuser); their grants to the application role are kept,
    so that role is created first."""
    path = Path(path).absolute()
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    scratch = f"{database}__restoring"
    if len(scratch.encode()) > _MAX_IDENTIFIER:
        raise BackupError(f"database name too long to restore into: {database!r}")
    occupied = _tables_in(cluster, database)
    if occupied and not replace:
        raise BackupError(
            f"database {database!r} already holds {occupied} tables: nothing was changed. "
            "Restore with --replace to drop it and put the backup in its place."
        )
    started = time.monotonic()
    cluster.ensure_app_role()
    cluster.drop_database(scratch)  # a leftover of an interrupted restore, never anything else
    cluster.ensure_database(scratch, template="template0")
    try:
        _pg_restore(cluster.url(scratch, driver="postgresql"), path, bindir=bindir, target=database)
    except BaseException:
        cluster.drop_database(scratch)
        raise
    _swap(cluster, scratch, database)
    with psycopg.connect(cluster.url(database, driver="postgresql")) as conn:
        rows = table_rows(conn)
    return RestoreReport(database=database, seconds=time.monotonic() - started, rows=rows, replaced=bool(occupied))


def _pg_restore(url: str, path: Path, *, bindir: Path, target: str) -> None:
    """All or nothing: one transaction, stopped at the first error."""
    args, env = _client_arguments(url)
    _check(
        subprocess.run(  # noqa: S603 - fixed argv, no shell
            [str(bindir / "pg_restore"), *args, "--single-transaction", "--exit-on-error", "--no-owner", str(path)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        ),
        f"pg_restore failed; database {target!r} was left as it was",
    )


def _tables_in(cluster: Cluster, database: str) -> int:
    """How many tables `database` holds (0 when it does not exist): any, in any schema, is data to keep."""
    with psycopg.connect(cluster.url("postgres", driver="postgresql"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return 0
    with psycopg.connect(cluster.url(database, driver="postgresql")) as conn:
        return len(conn.execute(_TABLES).fetchall())


def _swap(cluster: Cluster, scratch: str, database: str) -> None:
    """Put the restored scratch database in the place of `database`. Should the rename fail once the old
    database is gone, the scratch one is kept, since it is the only copy left."""
    cluster.drop_database(database)
    rename = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(scratch), sql.Identifier(database))
    try:
        with psycopg.connect(cluster.url("postgres", driver="postgresql"), autocommit=True) as conn:
            conn.execute(rename)
    except psycopg.Error as exc:
        raise BackupError(f"restored into {scratch!r} but could not rename it to {database!r}: {exc}") from exc


# --- shared -----------------------------------------------------------------------------------


def table_rows(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of every table of the connection's database, as schema.table -> count."""
    counts: dict[str, int] = {}
    for schema, table in conn.execute(_TABLES).fetchall():
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()
        assert row is not None
        counts[f"{schema}.{table}"] = int(row[0])
    return counts


def _libpq(url: str) -> str:
    """postgresql+psycopg://… (SQLAlchemy's spelling) -> postgresql://… (libpq's)."""
    return re.sub(r"^(postgres(?:ql)?)\+\w+://", r"\1://", url)


def _client_arguments(url: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump/pg_restore arguments for `url`, and their environment: the password goes to PGPASSWORD,
    never to the command line; host, port and user become -h/-p/-U; the database and any other
    parameter (sslmode…) a conninfo string in -d."""
    try:
        parsed = conninfo_to_dict(_libpq(url))
    except psycopg.ProgrammingError:
        # libpq's message quotes the whole string, password included: say less.
        raise BackupError("the database URL is not a valid libpq URL") from None
    params = {key: str(value) for key, value in parsed.items()}
    env = {**os.environ, "PGAPPNAME": "maillage-backup"}
    if "password" in params:
        env["PGPASSWORD"] = params.pop("password")
    args = ["--no-password"]  # never prompt: a cron job would hang
    for key, flag in (("host", "-h"), ("port", "-p"), ("user", "-U")):
        if key in params:
            args += [flag, params.pop(key)]
    args += ["-d", make_conninfo(**params)]
    return args, env


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        raise BackupError(f"{what}: {result.stderr.strip() or f'exit status {result.returncode}'}")
