"""`maillage` command line: the local cluster, migrations, seeds, tokens, the OpenAPI file, the server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import psycopg
import structlog
import typer
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from directory.access import Role
from directory.errors import DirectoryError
from directory.models import ApiClient
from geo.errors import GeoError

from .cluster import Cluster, ClusterError
from .db import libpq_url, make_engine
from .settings import REPO_ROOT, OidcIssuer, Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="The project-managed local PostGIS cluster.")
tokens_app = typer.Typer(no_args_is_help=True, help="Access tokens signed with the local key.")
clients_app = typer.Typer(no_args_is_help=True, help="API clients of partner systems (OAuth client credentials).")
listings_app = typer.Typer(no_args_is_help=True, help="Listing upkeep.")
handoffs_app = typer.Typer(no_args_is_help=True, help="Care-pathway upkeep.")
sync_app = typer.Typer(no_args_is_help=True, help="Outbound webhooks.")
retention_app = typer.Typer(no_args_is_help=True, help="Data retention (CNIL).")
coverage_app = typer.Typer(no_args_is_help=True, help="Coverage of the territory, precomputed for the statistics.")
hours_app = typer.Typer(no_args_is_help=True, help="Opening calendars, the search's projection of opening hours.")
search_app = typer.Typer(no_args_is_help=True, help="Search points, the projection a search near a point scans.")
stats_app = typer.Typer(no_args_is_help=True, help="Handoff rollups, what the statistics read.")
bindings_app = typer.Typer(
    no_args_is_help=True, help="Identity bindings: who of an outside OpenID provider acts in Maillage, as what."
)
app.add_typer(db_app, name="db")
app.add_typer(tokens_app, name="tokens")
app.add_typer(clients_app, name="clients")
app.add_typer(listings_app, name="listings")
app.add_typer(handoffs_app, name="handoffs")
app.add_typer(sync_app, name="sync")
app.add_typer(retention_app, name="retention")
app.add_typer(hours_app, name="hours")
app.add_typer(coverage_app, name="coverage")
app.add_typer(search_app, name="search")
app.add_typer(stats_app, name="stats")
app.add_typer(bindings_app, name="bindings")
import_app = typer.Typer(no_args_is_help=True, help="Open data in: listings published by outside sources.")
territories_app = typer.Typer(no_args_is_help=True, help="The official territories: a newer release of the communes.")
app.add_typer(territories_app, name="territories")
app.add_typer(import_app, name="import")
export_app = typer.Typer(no_args_is_help=True, help="Open data out: the published directory in exchange formats.")
app.add_typer(export_app, name="export")

T = TypeVar("T")
log = structlog.get_logger()
DATABASE = "maillage"
OPENAPI_PATH = REPO_ROOT / "openapi" / "openapi.json"
SEEDS_DIR = REPO_ROOT / "seeds"


def _settings() -> Settings:
    return Settings()


def database_url(settings: Settings, *, owner: bool = False) -> str:
    """DATABASE_URL when set (production path); otherwise the local cluster, started on demand.
    `owner`: the URL that may change the schema (migrations, seeds, retention), not the API's role."""
    if settings.database_url:
        return (settings.owner_database_url or settings.database_url) if owner else settings.database_url
    cluster = Cluster(settings.var_dir)
    cluster.start()
    cluster.ensure_database(DATABASE)
    return cluster.url(DATABASE) if owner else cluster.app_url(DATABASE)


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


# --- database -------------------------------------------------------------------------------


@db_app.command("start")
def db_start() -> None:
    """Install PostgreSQL + PostGIS if needed, initialise and start the local cluster."""
    settings = _settings()
    try:
        database_url(settings)
    except ClusterError as exc:
        _fail(str(exc))
    _print_status(Cluster(settings.var_dir))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the local cluster."""
    stopped = Cluster(_settings().var_dir).stop()
    typer.echo("stopped" if stopped else "the local cluster was not running")


@db_app.command("status")
def db_status() -> None:
    """Say whether the local cluster runs, and where its data lives."""
    settings = _settings()
    if settings.database_url:
        typer.echo("DATABASE_URL is set: the local cluster is not used.")
    _print_status(Cluster(settings.var_dir))


def _print_status(cluster: Cluster) -> None:
    status = cluster.status()
    typer.echo(f"running:  {'yes' if status['running'] else 'no'}")
    typer.echo(f"data:     {status['data_dir']}")
    if not status["inside_checkout"]:
        typer.echo("          (outside the checkout: the postgres user cannot reach var/ here)")
    typer.echo(f"port:     {status['port'] or '-'} (127.0.0.1)")
    typer.echo(f"log:      {status['log']}")


@db_app.command("url")
def db_url() -> None:
    """Print the SQLAlchemy URL of the application database (it contains the local password)."""
    typer.echo(database_url(_settings()))


@db_app.command("backup")
def db_backup(
    path: Annotated[
        str | None, typer.Argument(help="Where to write it; default var/backups/maillage-<UTC time>.dump.")
    ] = None,
) -> None:
    """Back up the application database (pg_dump custom format: compressed, restorable into a newer
    PostgreSQL). The file is readable by its owner only: it holds case data about children."""
    from .backup import backup, default_path
    from .cluster import ensure_server_packages

    settings = _settings()
    target = path or default_path(settings.var_dir, datetime.now(UTC))
    try:
        report = backup(libpq_url(database_url(settings, owner=True)), target, bindir=ensure_server_packages())
    except ClusterError as exc:
        _fail(str(exc))
    typer.echo(
        f"wrote {report.path}: {report.size / 1e6:.1f} MB, {len(report.rows)} tables, "
        f"{sum(report.rows.values())} rows, in {report.seconds:.1f} s"
    )


@db_app.command("restore")
def db_restore(
    path: str,
    replace: Annotated[bool, typer.Option(help="Drop the current database and put the backup in its place.")] = False,
) -> None:
    """Restore a backup of `maillage db backup` into the local cluster's application database, in one
    transaction. A database that holds tables is kept unless --replace."""
    from .backup import restore
    from .cluster import ensure_server_packages

    settings = _settings()
    if settings.database_url:
        _fail(
            "DATABASE_URL is set: `maillage db restore` restores into the local cluster only. Restore yourself"
            " into an empty database, as its owner, the password in ~/.pgpass or PGPASSWORD (never on the"
            " command line):\n"
            f"  pg_restore --single-transaction --exit-on-error --no-owner -h HOST -p PORT -U OWNER -d DATABASE {path}"
        )
    cluster = Cluster(settings.var_dir)
    try:
        cluster.start()
        report = restore(cluster, DATABASE, path, bindir=ensure_server_packages(), replace=replace)
    except ClusterError as exc:
        _fail(str(exc))
    typer.echo(
        f"restored {path} into {report.database}{' (replaced)' if report.replaced else ''}: "
        f"{len(report.rows)} tables, {sum(report.rows.values())} rows, in {report.seconds:.1f} s"
    )
    for table, rows in report.rows.items():
        typer.echo(f"  {table:40} {rows:>10}")


# --- schema and data --------------------------------------------------------------------------


@app.command()
def migrate() -> None:
    """Apply the Alembic migrations up to head."""
    from .migrations_runner import upgrade

    upgrade(database_url(_settings(), owner=True))


@app.command()
def seed(
    demo: Annotated[bool, typer.Option(help="Also load synthetic demo listings (local runs only).")] = False,
) -> None:
    """Load reference data (territories, holidays, specialisms, CRIPs, the collective's members). Idempotent."""
    from directory import coverage, hours, seeding
    from directory import demo as demo_data
    from geo.calendars import load_public_holidays
    from geo.loading import load_territories

    settings = _settings()
    if demo and settings.database_url:
        _fail("demo listings are for local runs only: DATABASE_URL is set")
    with psycopg.connect(libpq_url(database_url(settings, owner=True))) as conn:
        report = load_territories(conn)
        load_public_holidays(conn)  # drops the opening calendars of a zone whose holidays change
        seeding.seed_specialisms(conn)
        seeding.seed_hotline(conn)
        crips = seeding.seed_crips(conn)
        members = seeding.seed_collective(conn, SEEDS_DIR)
        demo_count = demo_data.seed_demo(conn) if demo else 0
        coverage.refresh(conn, rebuild=not report.skipped)  # reloaded territories may move commune points
        hours.refresh(conn)
    state = "already loaded" if report.skipped else "loaded"
    typer.echo(
        f"territories {state}: {report.regions} régions, {report.departements} départements, "
        f"{report.collectivites} collectivités, {report.communes} communes; {crips} CRIPs; "
        f"{members} members of the collective" + (f"; {demo_count} demo services" if demo else "")
    )


@import_app.command("data-inclusion")
def import_data_inclusion(
    source: Annotated[
        str,
        typer.Argument(
            help="A directory holding data·inclusion's JSON extract (structures.json, services.json), "
            "or its API's base URL (https://…/api/v1, with MAILLAGE_DATA_INCLUSION_TOKEN)."
        ),
    ],
    dry_run: Annotated[bool, typer.Option(help="Read, check and report, then roll everything back.")] = False,
    allow_mass_archive: Annotated[
        bool, typer.Option(help="Archive even when the extract lacks most of what was imported before.")
    ] = False,
) -> None:
    """Import data·inclusion's référentiel (Licence Ouverte 2.0): the services within Maillage's scope,
    their structures, places and areas. Idempotent; what disappeared is archived; listings managed in
    Maillage are never overwritten. Prints a summary (created, updated, archived, rejected with reasons)."""
    import httpx
    import ijson
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from sync import data_inclusion

    settings = _settings()
    client = None
    try:
        if source.startswith(("https://", "http://")):
            token = settings.data_inclusion_token.get_secret_value() if settings.data_inclusion_token else None
            client = httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0), follow_redirects=False)
            extract = data_inclusion.open_api(source, client, token)
        else:
            extract = data_inclusion.open_directory(Path(source))
    except (FileNotFoundError, NotADirectoryError) as exc:
        _fail(str(exc))
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    try:
        with (
            Progress(*columns, transient=True, disable=not sys.stderr.isatty()) as progress,
            psycopg.connect(libpq_url(database_url(settings, owner=True))) as conn,
        ):
            task = progress.add_task("reading data·inclusion", total=extract.total)
            rows = 0

            def tick() -> None:
                nonlocal rows
                rows += 1
                if rows % 500 == 0:
                    progress.update(task, completed=extract.progress())

            report = data_inclusion.run(conn, extract, tick=tick, allow_mass_archive=allow_mass_archive)
            if dry_run:
                conn.rollback()
    except (ValueError, RuntimeError, httpx.HTTPError, psycopg.Error, ijson.JSONError) as exc:
        _fail(f"import stopped, nothing was changed: {exc}")
    finally:
        if client is not None:
            client.close()
    _print_import(report, dry_run=dry_run)


def _print_import(report: Any, *, dry_run: bool) -> None:
    read = ", ".join(f"{count} {kind}" for kind, count in sorted(report.read.items()))
    typer.echo(f"read {read}" + (" (dry run: nothing kept)" if dry_run else ""))
    for name in ("organisations", "locations", "services"):
        t = getattr(report, name)
        typer.echo(
            f"  {name:14} created {t.created:>6}  updated {t.updated:>6}  unchanged {t.unchanged:>6}  "
            f"archived {t.archived:>6}  kept (managed in Maillage) {t.kept:>6}"
        )
    for title, counter in (("rejected", report.rejected), ("left out", report.skipped)):
        for reason, count in counter.most_common():
            examples = report.rejected_examples.get(reason, []) if title == "rejected" else []
            typer.echo(f"  {title}: {count} × {reason}" + (f" — e.g. {'; '.join(examples)}" if examples else ""))
    for value, count in report.left_out.most_common():
        typer.echo(f"  not carried over: {count} × {value}")


@export_app.command("hsds")
def export_hsds(
    directory: Annotated[Path, typer.Argument(help="Where to write the files (created if missing).")],
) -> None:
    """Dump the published directory as Open Referral HSDS 3.0 (one JSON object per line): every listed
    service fully nested, their places, the active organisations, the taxonomies and their terms, and
    hsds.json (version, counts, sources and licences). A safe house is published as its commune and its
    front-door contact, as in the HSDS API. Read in one snapshot; files are replaced only when complete."""
    from sync import hsds

    settings = _settings()

    async def run() -> dict[str, int]:
        async with await psycopg.AsyncConnection.connect(libpq_url(database_url(settings))) as conn:
            await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
            await conn.set_read_only(True)
            async with conn.transaction():
                return await hsds.export(conn, directory, base_url=settings.public_base_url)

    try:
        counts = asyncio.run(run())
    except (OSError, psycopg.Error) as exc:
        _fail(f"export stopped, no file was replaced: {exc}")
    for name, count in counts.items():
        typer.echo(f"{count} {name} → {directory / (name + '.ndjson')}")


@territories_app.command("refresh")
def territories_refresh(
    year: Annotated[int, typer.Option(help="The COG year of the release (its communes as of 1 January).")],
    communes: Annotated[Path, typer.Option(help="INSEE's v_commune_YYYY.csv.")],
    events: Annotated[Path, typer.Option(help="INSEE's v_mvt_commune_YYYY.csv (commune events).")],
    boundaries: Annotated[
        Path, typer.Option(help="IGN ADMIN EXPRESS COG communes as GeoJSON in EPSG:4326 (INSEE_COM on each feature).")
    ],
    dry_run: Annotated[bool, typer.Option(help="Report what would change, then roll back.")] = False,
) -> None:
    """Load a newer release of the communes and remap every stored commune code through INSEE's commune
    events (a merger's codes go to the commune nouvelle). Codes the events cannot map to one commune are
    kept and reported, never guessed. Schema owner; one transaction."""
    from sync import territories

    for path in (communes, events, boundaries):
        if not path.is_file():
            _fail(f"{path}: no such file")
    source = f"INSEE COG {year} ({communes.name}, {events.name}) + IGN ADMIN EXPRESS COG ({boundaries.name})"
    try:
        with (
            psycopg.connect(libpq_url(database_url(_settings(), owner=True))) as conn,
            events.open(encoding="utf-8-sig", newline="") as event_lines,
        ):
            report = territories.refresh(
                conn,
                communes=territories.read_communes(communes),
                boundaries=territories.read_boundaries(boundaries),
                events=event_lines,
                year=year,
                source=source,
            )
            if dry_run:
                conn.rollback()
    except (ValueError, DirectoryError, GeoError, psycopg.Error) as exc:
        _fail(f"refresh stopped, nothing was changed: {exc}")
    typer.echo(f"territories of {report.year}" + (" (dry run: nothing kept)" if dry_run else ""))
    typer.echo(
        f"  communes: {len(report.added)} added, {report.renamed} renamed, {len(report.redrawn)} redrawn, "
        f"{len(report.removed)} removed"
    )
    for remap in report.remaps:
        typer.echo(f"  {remap.old_code} → {remap.new_code}: {remap.reason}")
    for remap in report.unresolved:
        typer.echo(f"  kept {remap.old_code}: {remap.reason}")
    for column, count in report.rows_remapped.items():
        if count:
            typer.echo(f"  {column}: {count} rows remapped")


# --- tokens -----------------------------------------------------------------------------------


@tokens_app.command("issue")
def tokens_issue(
    role: Annotated[Role, typer.Option(help="specialist, partner, department or admin")],
    org: Annotated[uuid.UUID | None, typer.Option(help="Organisation id (partners).")] = None,
    collectivite: Annotated[str | None, typer.Option(help="Collectivité code (departments), e.g. 93D.")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds (at most 900).")] = 900,
    sub: Annotated[str, typer.Option(help="Subject: who the token stands for.")] = "local-user",
) -> None:
    """Print an access token signed with the local key."""
    from .app import build_token_service
    from .tokens import InvalidToken

    try:
        token = build_token_service(_settings()).issue(
            subject=sub, role=role, organisation_id=org, collectivite_code=collectivite, ttl=ttl
        )
    except (ValueError, InvalidToken) as exc:
        _fail(str(exc))
    typer.echo(token)


# --- API clients ------------------------------------------------------------------------------


def _with_engine(work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `work` with an engine of the application role, disposed of afterwards."""

    async def run() -> T:
        settings = _settings()
        engine = make_engine(
            database_url(settings),
            pool_size=2,
            statement_timeout_ms=60_000,
            startup_options=settings.startup_options,
            prepared_statements=settings.prepared_statements,
        )
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction on the application database."""
    from .jobs import in_transaction

    return _with_engine(lambda engine: in_transaction(engine, work))


def _print_client(client: ApiClient, secret: str | None = None) -> None:
    typer.echo(f"client_id:     {client.id}")
    typer.echo(f"name:          {client.name}")
    typer.echo(
        f"role:          {client.role}"
        + (
            f" (organisation {client.organisation_id})"
            if client.organisation_id
            else f" (collectivité {client.collectivite_code})"
            if client.collectivite_code
            else ""
        )
    )
    if client.revoked_at:
        typer.echo(f"revoked_at:    {client.revoked_at.isoformat()}")
    if secret:
        typer.echo(f"client_secret: {secret}")
        typer.secho("The secret is shown once: store it now (only its hash is kept).", fg=typer.colors.YELLOW)


@clients_app.command("create")
def clients_create(
    role: Annotated[Role, typer.Option(help="partner (with --org), department (with --collectivite)…")],
    org: Annotated[uuid.UUID | None, typer.Option(help="The partner's organisation id.")] = None,
    collectivite: Annotated[str | None, typer.Option(help="The department's collectivité, e.g. 93D.")] = None,
    name: Annotated[str, typer.Option(help="What the client is, for the humans reading the list.")] = "partner system",
) -> None:
    """Register an API client and print its id and secret (once)."""
    from directory import clients

    try:
        issued = _in_session(
            lambda s: clients.create(s, name=name, role=role, organisation_id=org, collectivite_code=collectivite)
        )
    except DirectoryError as exc:
        _fail(exc.detail)
    _print_client(issued.client, issued.secret)


@clients_app.command("list")
def clients_list(org: Annotated[uuid.UUID | None, typer.Option(help="Only this organisation's.")] = None) -> None:
    """List API clients (never their secrets)."""
    from directory import clients

    for client in _in_session(lambda s: clients.list_(s, organisation_id=org)):
        state = "revoked" if client.revoked_at else "active"
        typer.echo(
            f"{client.id}  {state:8} {client.role:11} {client.organisation_id or client.collectivite_code or ''}"
            f"  {client.name}"
        )


@clients_app.command("rotate")
def clients_rotate(client_id: uuid.UUID) -> None:
    """Issue a new secret; the old one stops working at once."""
    from directory import clients

    try:
        issued = _in_session(lambda s: clients.rotate(s, client_id))
    except DirectoryError as exc:
        _fail(exc.detail)
    _print_client(issued.client, issued.secret)


@clients_app.command("revoke")
def clients_revoke(client_id: uuid.UUID) -> None:
    """Revoke a client: no new tokens, and its current tokens can no longer write."""
    from directory import clients

    try:
        client = _in_session(lambda s: clients.revoke(s, client_id))
    except DirectoryError as exc:
        _fail(exc.detail)
    _print_client(client)


@listings_app.command("remind")
def listings_remind(
    within_days: Annotated[int, typer.Option(help="Also listings falling due within this many days.")] = 0,
) -> None:
    """Queue a `listing.verification_due` event for every organisation with listings due for
    re-verification (stale after 180 days); their webhooks deliver it. The worker runs it daily."""
    from .jobs import remind_listings

    organisations = _with_engine(lambda engine: remind_listings(engine, within_days=within_days))
    typer.echo(f"{organisations} organisations have listings due for re-verification")


@handoffs_app.command("expire")
def handoffs_expire() -> None:
    """Flag handoffs past their acknowledgement deadline (and tell both sides), and expire those still
    unanswered after the grace period. The worker runs it every minute; idempotent."""
    from .jobs import expire_handoffs

    grace = timedelta(hours=_settings().expire_after_overdue_hours)
    overdue, expired = _with_engine(lambda engine: expire_handoffs(engine, grace=grace))
    typer.echo(f"{overdue} handoffs newly overdue, {expired} expired")


@sync_app.command("deliver")
def sync_deliver() -> None:
    """Deliver the webhook events that are due (the worker does it as they are queued, and every minute)."""
    import httpx

    from sync.webhooks import SecretBox, system_resolver
    from sync.worker import deliver_once

    from .app import load_or_create_secret

    settings = _settings()
    box = SecretBox(load_or_create_secret(settings.secrets_path / "webhook-key"))

    async def deliver(engine: AsyncEngine) -> Any:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            return await deliver_once(
                engine, http, box, resolve=system_resolver, allow_loopback=settings.webhooks_allow_loopback
            )

    report = _with_engine(deliver)
    typer.echo(f"{report.delivered} delivered, {report.failed} to retry, {report.dead} dead-lettered")


@retention_app.command("apply")
def retention_apply() -> None:
    """Delete closed cases past their retention (with handoffs and events, keeping anonymous monthly
    counts) and audit rows past theirs. Runs as the schema owner; the worker runs it nightly."""
    from .jobs import apply_retention

    settings = _settings()
    report = apply_retention(database_url(settings, owner=True), settings)
    typer.echo(
        f"deleted {report.cases} cases ({report.handoffs} handoffs) closed more than "
        f"{settings.case_retention_years} years ago, and {report.audit_rows} audit rows older than "
        f"{settings.audit_retention_days} days"
    )


@hours_app.command("refresh")
def hours_refresh(
    rebuild: Annotated[bool, typer.Option(help="Rebuild every calendar, not only missing or expiring ones.")] = False,
) -> None:
    """Build the opening calendars searches read (missing ones, and those with under 30 days of window
    left) and drop unused ones. Searches stay right without them, only slower. The worker runs it daily
    (and the server when it starts). Runs as the schema owner."""
    from .jobs import refresh_hours

    built, dropped = refresh_hours(database_url(_settings(), owner=True), rebuild=rebuild)
    typer.echo(f"{built} opening calendars built, {dropped} unused ones dropped")


@coverage_app.command("refresh")
def coverage_refresh(
    rebuild: Annotated[bool, typer.Option(help="Recompute every commune, not only missing ones.")] = False,
) -> None:
    """Compute the nearest service of each specialism from each commune (writes keep it current; run it
    after reference data changes, or with --rebuild to make distances beyond 100 km exact). Schema owner."""
    from .jobs import refresh_coverage

    computed = refresh_coverage(database_url(_settings(), owner=True), rebuild=rebuild)
    typer.echo(f"{computed} commune × specialism distances computed")


@search_app.command("rebuild")
def search_rebuild() -> None:
    """Recompute the search points from the listing tables. Writes keep them current in their own
    transaction; this is for a repair, or after loading listings with triggers disabled. Schema owner."""
    from directory import search_points

    with psycopg.connect(libpq_url(database_url(_settings(), owner=True))) as conn:
        written = search_points.rebuild(conn)
    typer.echo(f"{written} search points written")


def _print_binding(binding: Any) -> None:
    scope = binding.organisation_id or binding.collectivite_code or ""
    state = f"revoked {binding.revoked_at:%Y-%m-%d}" if binding.revoked_at else "active"
    typer.echo(f"{binding.id}  {state:18} {binding.issuer}  {binding.claim}={binding.value}  {binding.role} {scope}")


@bindings_app.command("add")
def bindings_add(
    issuer: Annotated[str, typer.Option(help="A configured provider's issuer (MAILLAGE_OIDC_ISSUERS).")],
    claim: Annotated[str, typer.Option(help="One of that provider's mapped claims, e.g. groups.")],
    value: Annotated[str, typer.Option(help="The claim's value, e.g. crip-93.")],
    role: Annotated[Role, typer.Option(help="partner (with --org), department (with --collectivite)…")],
    org: Annotated[uuid.UUID | None, typer.Option(help="The partner's organisation id.")] = None,
    collectivite: Annotated[str | None, typer.Option(help="The department's collectivité, e.g. 93D.")] = None,
) -> None:
    """Bind a claim value of an outside provider to a role (and organisation or collectivité)."""
    from directory import identity_bindings

    _check_issuer(issuer, claim)
    try:
        binding = _in_session(
            lambda s: identity_bindings.create(
                s,
                issuer=issuer,
                claim=claim,
                value=value,
                role=role,
                organisation_id=org,
                collectivite_code=collectivite,
                created_by="cli",
            )
        )
    except DirectoryError as exc:
        _fail(exc.detail)
    _print_binding(binding)


def _check_issuer(issuer: str, claim: str) -> None:
    from .oidc import unbindable

    refused = unbindable(_settings().oidc_issuers, issuer, claim)
    if refused is not None:
        _fail(f"{refused[0]}: {refused[1]}")


@bindings_app.command("list")
def bindings_list(issuer: Annotated[str | None, typer.Option(help="Only this provider's.")] = None) -> None:
    """List identity bindings, revoked ones included."""
    from directory import identity_bindings

    for binding in _in_session(lambda s: identity_bindings.list_(s, issuer=issuer)):
        _print_binding(binding)


@bindings_app.command("revoke")
def bindings_revoke(binding_id: uuid.UUID) -> None:
    """Revoke a binding: its people lose that role on their next request."""
    from directory import identity_bindings

    try:
        binding = _in_session(lambda s: identity_bindings.revoke(s, binding_id))
    except DirectoryError as exc:
        _fail(exc.detail)
    _print_binding(binding)


@stats_app.command("rebuild")
def stats_rebuild() -> None:
    """Recompute the handoff rollups from the handoffs (the parts retention archived are kept). Writes
    keep them current in their own transaction; this is for a repair. Schema owner."""
    from directory import handoff_rollups

    with psycopg.connect(libpq_url(database_url(_settings(), owner=True))) as conn:
        written = handoff_rollups.rebuild(conn)
    typer.echo(f"{written} handoff rollup rows written")


# --- API --------------------------------------------------------------------------------------


@app.command()
def openapi(check: Annotated[bool, typer.Option(help="Fail if the committed file is stale.")] = False) -> None:
    """Write openapi/openapi.json from the application (or check it)."""
    from .app import create_app, openapi_document

    document = openapi_document(create_app(_settings()))
    if check:
        if not OPENAPI_PATH.exists() or OPENAPI_PATH.read_text() != document:
            _fail("openapi/openapi.json is stale: run `maillage openapi`")
        typer.echo("openapi/openapi.json is up to date")
        return
    OPENAPI_PATH.parent.mkdir(exist_ok=True)
    OPENAPI_PATH.write_text(document)
    typer.echo(f"wrote {OPENAPI_PATH.relative_to(REPO_ROOT)}")


@app.command()
def serve(
    workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes (one per core is right).")] = 1,
) -> None:
    """Serve the API (PORT overrides the port), and its metrics on MAILLAGE_METRICS_PORT. Ctrl-C stops
    it; the database keeps running. Every process shares its limits through the database."""
    import uvicorn

    from .logs import configure_logging

    settings = _settings()
    configure_logging(json=settings.log_json)
    database_url(settings)  # starts the local cluster when there is no DATABASE_URL
    if settings.metrics_port:
        # Before prometheus_client is first imported, here and in the workers: they write their
        # figures to files under this directory, which the metrics endpoint adds up.
        directory = settings.var_dir / "metrics" / f"serve-{settings.port}"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in directory.glob("*.db"):
            stale.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        from .metrics import serve_metrics

        serve_metrics(settings, database_url=database_url(settings))
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        workers=workers,
        host=settings.host,
        port=settings.port,
        access_log=False,  # api.middleware logs each request, without its query string
        log_config=None,  # uvicorn's own lines go through api.logs, JSON when asked
        log_level="warning",
        loop="uvloop",
        http="httptools",
        # uvicorn kills a worker that has not answered its supervisor within this: a worker starting on a
        # busy machine (imports take seconds of CPU) was killed and replaced, again and again, at 5 s.
        timeout_worker_healthcheck=30,
    )


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Jobs run at once by this worker.")] = 4,
    name: Annotated[str | None, typer.Option(help="How the health report names it (default host-pid).")] = None,
) -> None:
    """Run the scheduled work and the queued jobs (api/jobs.py) until Ctrl-C or SIGTERM, which let the
    jobs under way finish. Run as many as you like: no job runs twice at once, and the jobs of a worker
    that died are run again by the others."""
    from .jobs import run_worker
    from .logs import configure_logging

    settings = _settings()
    configure_logging(json=settings.log_json)
    app_url, owner_url = database_url(settings), database_url(settings, owner=True)
    asyncio.run(run_worker(settings, app_url=app_url, owner_url=owner_url, concurrency=concurrency, name=name))


@app.command()
def run() -> None:
    """Everything `make run` needs: database, migrations, reference data, then the worker and the server."""
    settings = _settings()
    try:
        database_url(settings)
    except ClusterError as exc:
        _fail(str(exc))
    migrate()
    local = settings.database_url is None
    seed(demo=local)
    base = settings.public_base_url
    with contextlib.ExitStack() as stack:
        issuer = stack.enter_context(_local_provider(settings)) if local else None
        stack.enter_context(_worker_beside())
        typer.secho(
            f"\nMaillage on {base} — console at {base}/console, interactive docs at {base}/docs", fg=typer.colors.GREEN
        )
        typer.echo("Get a token (valid 15 minutes), then call the API:")
        typer.echo("  TOKEN=$(.venv/bin/maillage tokens issue --role specialist)")
        typer.echo(f'  curl -H "Authorization: Bearer $TOKEN" "{base}/v1/territories/resolve?lat=45.76&lon=4.84"')
        if issuer is not None:
            typer.echo(
                f"Or log in as a person, the way production does: OpenID provider {issuer} (client "
                "maillage-console, authorization code + PKCE); users specialiste, analyste-93, partenaire, "
                "admin (README, 'Logging in')."
            )
        if settings.metrics_port:
            typer.echo(f"Metrics for Prometheus: http://{settings.metrics_host}:{settings.metrics_port}/metrics")
        typer.echo("A worker runs the scheduled work beside the server (`maillage worker`).")
        typer.echo("Ctrl-C stops both; `.venv/bin/maillage db stop` stops the database.\n")
        serve()


@contextlib.contextmanager
def _worker_beside() -> Iterator[None]:
    """`maillage worker` in a process of its own for as long as the server runs. Ctrl-C reaches both
    (one process group); otherwise it is asked to stop, and killed if it will not."""
    worker = subprocess.Popen([sys.executable, "-m", "api.cli", "worker"])
    try:
        yield
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=5)  # after a Ctrl-C it is already finishing its jobs
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=40)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


@contextlib.contextmanager
def _local_provider(settings: Settings) -> Iterator[str | None]:
    """The local OpenID provider with its demo people, trusted by the server it runs beside, and the demo
    bindings of their groups. Without Node.js it is skipped with a warning: tokens of `maillage tokens
    issue` still work."""
    from .local_oidc import DEMO_AUDIENCE, DEMO_RESOURCE, bind_demo_groups, demo_config, demo_keys, running

    keys = demo_keys(settings.var_dir / "oidc" / "keys.json")
    redirects = [f"{settings.public_base_url}/console/callback", "http://127.0.0.1:8080/callback"]
    port = settings.local_oidc_port
    try:
        provider = running(demo_config(keys, redirects), settings.var_dir / "oidc" / "provider.log", port=port)
        started = provider.__enter__()
    except RuntimeError as exc:
        typer.secho(f"The local OpenID provider is not running: {exc}", fg=typer.colors.YELLOW, err=True)
        yield None
        return
    try:
        configured = OidcIssuer(issuer=started.issuer, audience=DEMO_AUDIENCE, algorithms=("ES256",))
        others = [c for c in settings.oidc_issuers if c.issuer != started.issuer]
        os.environ["MAILLAGE_OIDC_ISSUERS"] = json.dumps([c.model_dump() for c in (*others, configured)])
        # The console logs in there too, unless the operator pointed it at another provider.
        if not settings.console_oidc_issuer:
            os.environ["MAILLAGE_CONSOLE_OIDC_ISSUER"] = started.issuer
            os.environ["MAILLAGE_CONSOLE_OIDC_RESOURCE"] = DEMO_RESOURCE

        _in_session(lambda session: bind_demo_groups(session, started.issuer, created_by="maillage run"))
        yield started.issuer
    finally:
        provider.__exit__(None, None, None)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
