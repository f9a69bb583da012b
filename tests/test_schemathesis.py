"""The API against its own OpenAPI document, with Schemathesis, once per role.

Schemathesis generates requests for every operation (the document's examples, the coverage of each
schema's edges, random fuzzing, stateful scenarios along declared links) and checks every answer:
no server error, a documented status, content type, headers and body, invalid data refused and valid
data accepted. A route whose behaviour drifts from the published contract fails here even when no
hand-written test covers it.

It drives the real server (`maillage serve`, a subprocess) over TCP rather than the ASGI app in process:
the same uvicorn, pools, committed transactions, Host check and settings as production, and the
Schemathesis CLI with its JSON report, so the CI log shows what the CLI says. Each chain of roles (see
CHAINS) has a server and a database of its own, loaded with the demo listings so that generated ids
and filters meet real rows; rate limits are raised through the same settings production reads, since
the fuzzer's bursts would otherwise measure the limiter instead of the API.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.app import create_app, route_policies
from api.cluster import Cluster
from api.settings import REPO_ROOT, Settings
from api.tokens import KeyStore, TokenService
from directory.access import Role
from directory.demo import seed_demo
from tests.database import create_test_database, plain
from tests.schemathesis.hooks import REFERENCE_ENV

# The virtualenv pytest runs in holds both `maillage` and `schemathesis`.
BIN = Path(sys.executable).parent
CONFIG = Path(__file__).parent / "schemathesis" / "schemathesis.toml"

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    # Ours (tests/schemathesis/hooks.py). The CLI runs only the checks named here, custom ones included.
    "rejections_are_deliberate",
)
PHASES = ("examples", "coverage", "fuzzing", "stateful")
SEED = 119
# Per operation and phase (the coverage phase ignores it: it sends every edge case the schema
# defines). The four roles together must stay within ~3 minutes of `make test` on 2 cores; longer
# fuzzing belongs in a slow run.
MAX_EXAMPLES = 5
WORKERS = 2

# Bounded waits, generous for a loaded CI machine. A role's run takes about a minute here; it must end
# well within the 15 minutes its token lives.
READY_TIMEOUT = 60.0
RUN_TIMEOUT = 600.0
STOP_TIMEOUT = 20.0
# High enough that no generated burst meets a limiter (they are tested on their own elsewhere).
UNLIMITED = "1000000"

ROLES = (Role.specialist, Role.partner, Role.department, Role.admin)
# The operations behind a role policy: the API's and its OGC API Features view's.
PROTECTED = ("/v1/", "/ogc")
# Two chains run side by side, each on a server and database of its own, their roles in turn: the
# partner's writes (its listings) after the specialist's reads, the admin's (deactivations, revoked
# clients) after the département's, as when the four ran in one sequence. Balanced by duration.
CHAINS = ((Role.specialist, Role.partner), (Role.department, Role.admin))


@dataclass(frozen=True)
class Demo:
    database: str
    organisation_id: uuid.UUID
    collectivite_code: str
    reference: dict[str, Any]  # real codes and ids, for hooks.py to put in valid-looking requests

    def reference_for(self, role: Role) -> dict[str, Any]:
        """What `role` may read, and under "own_*" what it may write: a partner only its organisation's."""
        own = {
            kind.removeprefix("by_org:"): values
            for kind, values in self.reference.items()
            if kind.startswith("by_org:")
        }
        reference = {kind: values for kind, values in self.reference.items() if not kind.startswith("by_org:")}
        for kind in ("organisations", "services", "locations", "areas"):
            if role is Role.partner and kind == "organisations":
                reference["own_organisations"] = [str(self.organisation_id)]
            elif role is Role.partner:
                reference[f"own_{kind}"] = own[kind].get(str(self.organisation_id), [])
            else:
                reference[f"own_{kind}"] = reference[kind]
        return reference


@dataclass(frozen=True)
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path
    tokens: TokenService
    demo: Demo

    def token(self, role: Role) -> str:
        """Issued when a role's run starts, so a slow earlier run never leaves it expired (15 minutes)."""
        return self.tokens.issue(
            subject=f"schemathesis-{role.value}",
            role=role,
            organisation_id=self.demo.organisation_id if role is Role.partner else None,
            collectivite_code=self.demo.collectivite_code if role is Role.department else None,
            ttl=900,
        )

    def died(self) -> str | None:
        """What the server said before exiting on its own; None while it runs."""
        if self.process.poll() is None:
            return None
        return f"the server exited with status {self.process.returncode}; its last output:\n{_tail(self.log)}"


@contextlib.contextmanager
def _demo_database(cluster: Cluster, suffix: str) -> Iterator[Demo]:
    """A database of the chain's own (writes from the generated requests stay out of the other tests
    and the other chain), with the demo listings so that searches, listings and their ids reach real
    rows."""
    name = create_test_database(cluster, suffix=suffix)
    try:
        with psycopg.connect(plain(cluster.url(name))) as conn:
            seed_demo(conn, count=60)
            row = conn.execute(
                """SELECT o.id, c.collectivite_code
                     FROM organisation o JOIN commune c ON c.code = o.seat_commune_code
                    WHERE o.demo ORDER BY o.seed_key LIMIT 1"""
            ).fetchone()
            reference = _reference(conn)
        assert row is not None, "the demo seed made no organisation"
        yield Demo(database=name, organisation_id=row[0], collectivite_code=row[1], reference=reference)
    finally:
        cluster.drop_database(name)


@contextlib.contextmanager
def _server(cluster: Cluster, demo: Demo, var: Path) -> Iterator[Server]:
    database_url = cluster.app_url(demo.database)
    # Built before the server starts: it writes the signing key under var/keys, which the server then
    # loads instead of generating its own, so the tokens issued here verify there. Neither side reads
    # the caller's MAILLAGE_* (a keys directory or issuer of its own would part them).
    # (The settings' defaults, without reading the environment: these runs go on in a thread beside the
    # other tests, which must not see it change.)
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    tokens = TokenService(
        KeyStore.load_or_create(var / "keys"),
        issuer=defaults["token_issuer"],
        audience=defaults["token_audience"],
        max_ttl=defaults["token_max_ttl_seconds"],
        leeway=defaults["token_leeway_seconds"],
    )
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAILLAGE_")}
    env.update(
        DATABASE_URL=database_url,
        MAILLAGE_VAR_DIR=str(var),
        MAILLAGE_PORT=str(port),
        MAILLAGE_PUBLIC_BASE_URL=base_url,
        MAILLAGE_WRITES_PER_MINUTE=UNLIMITED,
        MAILLAGE_TOKEN_REQUESTS_PER_MINUTE=UNLIMITED,
        MAILLAGE_STATS_QUERIES_PER_MINUTE=UNLIMITED,
        # The contract is checked here, not the speed: these runs share the machine with the other tests,
        # and a national statistic that takes 3 s alone can pass the 5 s timeout beside them (a 503).
        MAILLAGE_STATEMENT_TIMEOUT_MS="60000",
        # Generated webhook subscriptions name arbitrary hosts: no worker runs beside these servers, so
        # nothing is ever sent to them. Metrics off: two servers run at once.
        MAILLAGE_METRICS_PORT="0",
        MAILLAGE_GEOCODING_URL="",  # no outside call: addresses without a point stand at their commune
    )
    env.pop("PORT", None)
    log = var / "server.log"
    with log.open("wb") as sink:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen(
            [str(BIN / "maillage"), "serve"], cwd=REPO_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    running = Server(base_url=base_url, process=process, log=log, tokens=tokens, demo=demo)
    try:
        _wait_ready(running)
        yield running
    finally:
        if running.died() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)


@dataclass
class Outcome:
    summaries: list[str]
    problems: list[str]


def start(cluster: Cluster, workdir: Path) -> concurrent.futures.Future[dict[Role, Outcome]]:
    """Every role's runs, in a thread of their own: tests/conftest.py starts them with the session, so
    that their ~4 minutes of servers and CLIs go on beside the other tests rather than after them."""
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="schemathesis")
    future = executor.submit(_run_chains, cluster, workdir)
    executor.shutdown(wait=False)
    return future


def _run_chains(cluster: Cluster, workdir: Path) -> dict[Role, Outcome]:
    """The chains side by side (each CLI run leaves a core mostly idle), each on its own server and
    database, stopped and dropped once both are done."""
    with contextlib.ExitStack() as stack:
        servers = []
        for index, _ in enumerate(CHAINS):
            demo = stack.enter_context(_demo_database(cluster, suffix=f"_st{index}"))
            var = workdir / f"var{index}"
            var.mkdir()
            servers.append(stack.enter_context(_server(cluster, demo, var)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(CHAINS)) as pool:
            chains = [
                pool.submit(_chain, chain, server, workdir) for chain, server in zip(CHAINS, servers, strict=True)
            ]
            results = {role: outcome for chain in chains for role, outcome in chain.result().items()}
        for server in servers:
            died = server.died()
            if died is not None:
                for outcome in results.values():
                    outcome.problems.append(died)
    return results


@pytest.fixture(scope="module")
def outcomes(schemathesis_runs: concurrent.futures.Future[dict[Role, Outcome]] | None) -> dict[Role, Outcome]:
    """The runs started with the session (tests/conftest.py), waited for."""
    assert schemathesis_runs is not None, "conftest.py starts the runs when this module is selected"
    return schemathesis_runs.result(timeout=2 * len(ROLES) * RUN_TIMEOUT)


def _chain(roles: tuple[Role, ...], server: Server, workdir: Path) -> dict[Role, Outcome]:
    """The roles' runs one after the other, on one server: their writes meet in the order listed."""
    results = {}
    for role in roles:
        refused, denied_elsewhere = _refused(role)
        shared = _allowed_earlier(role)
        token = server.token(role)
        outcome = Outcome(summaries=[], problems=[])
        # Every edge case of the schema (coverage) for the operations no earlier role may call; examples,
        # random and stateful requests for every operation this role may call.
        _run(
            role,
            server,
            token,
            workdir / f"{role.value}-coverage",
            outcome,
            phases=("coverage",),
            excluded=refused + denied_elsewhere + shared,
            included=[],
        )
        _run(
            role,
            server,
            token,
            workdir / f"{role.value}-allowed",
            outcome,
            phases=tuple(phase for phase in PHASES if phase != "coverage"),
            excluded=refused + denied_elsewhere,
            included=[],
        )
        if refused:
            _run(
                role,
                server,
                token,
                workdir / f"{role.value}-refused",
                outcome,
                phases=("fuzzing",),
                excluded=[],
                included=refused,
            )
        results[role] = outcome
    return results


@pytest.mark.parametrize("role", ROLES, ids=[role.value for role in ROLES])
def test_schemathesis(
    role: Role,
    outcomes: dict[Role, Outcome],
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Zero failures and zero errors, every selected operation tested.

    Three runs of the CLI per role. The coverage phase (every edge case the schema defines; most of a
    run's time) for the operations no earlier role may call: an operation meets it once, from the first
    role allowed it. Examples, random and stateful requests for every operation the role may call, where
    what it may see and do differs. Then the operations it is refused and no earlier role's run covers,
    fuzzed only: the route's policy answers those with the same 403 before reading anything, so fuzzing
    checks that answer's conformance, while the coverage phase would only send it hundreds of edge cases
    refused alike (it was half the specialist's run)."""
    outcome = outcomes[role]
    for line in outcome.summaries:
        _publish(line, tmp_path_factory, capsys)
    if outcome.problems:
        pytest.fail("\n\n".join(outcome.problems), pytrace=False)


def _run(
    role: Role,
    server: Server,
    token: str,
    workdir: Path,
    outcome: Outcome,
    *,
    phases: tuple[str, ...],
    excluded: list[str],
    included: list[str],
) -> None:
    """One CLI run over the selected operations: its summary line, and what broke with the CLI's and
    the server's account of it."""
    workdir.mkdir()
    report_dir = workdir / "report"
    command = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{server.base_url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        ",".join(phases),
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        str(WORKERS),
        "--report",
        "json",
        "--report-dir",
        str(report_dir),
        "--no-color",
    ]
    for name in excluded:
        command += ["--exclude-name", name]
    for name in included:
        command += ["--include-name", name]
    shown = " ".join(command)  # without the token
    command += ["-H", f"Authorization: Bearer {token}"]
    reference = workdir / "reference.json"
    reference.write_text(json.dumps(server.demo.reference_for(role)))
    env = {**_without_proxies(os.environ), "NO_COLOR": "1", "COLUMNS": "160", REFERENCE_ENV: str(reference)}
    log_offset = server.log.stat().st_size
    label = f"{role.value}, {'+'.join(phases)}"
    try:
        # From the repository root, where schemathesis.toml's paths start. The CLI's caches are off; only
        # Hypothesis' own (git-ignored `.hypothesis/`: Unicode tables, constants) lands in the checkout.
        result = subprocess.run(
            command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        outcome.problems.append(
            f"[{label}] schemathesis did not finish within {RUN_TIMEOUT:.0f} s\n{shown}\n{partial[-8000:]}"
        )
        return
    output = result.stdout + result.stderr
    (workdir / "schemathesis.log").write_text(output)

    reports = sorted(report_dir.glob("json-*.json"))
    if not reports:
        outcome.problems.append(
            f"[{label}] schemathesis wrote no JSON report (exit {result.returncode})\n{shown}\n{output[-8000:]}"
        )
        return
    report: dict[str, Any] = json.loads(reports[0].read_text())
    summary = _summary_line(label, report)
    outcome.summaries.append(summary)

    problems = _problems(report)
    selected = (report.get("operations") or {}).get("selected")
    if included and selected != len(included):  # a name that matches nothing would test nothing
        problems.append(f"{selected} operations selected of the {len(included)} named")
    if result.returncode != 0 and not problems:  # e.g. a health check or a hook error outside the report
        problems.append(f"schemathesis exited with status {result.returncode}")
    if not problems:
        return
    # The CLI's own account of what broke, without a traceback of this harness around it.
    lines = [summary, *problems, f"command: {shown} -H 'Authorization: Bearer …'"]
    lines += [f"full output: {workdir / 'schemathesis.log'}", _excerpt(output)]
    errors = _server_errors(server.log, log_offset)
    if errors:
        lines += [f"the server's errors during this run (all in {server.log}):", errors]
    outcome.problems.append("\n".join(lines))


def _refused(role: Role) -> tuple[list[str], list[str]]:
    """The operations this role may not call: those whose refusal its run tests (it is the first role
    refused them), and those an earlier role's run already tests.

    The route's policy answers a refused role with the same 403 whatever the request holds, so one
    refused role's run per operation covers that answer's conformance; running it again for every
    other refused role only costs time. Every role that may call an operation still runs it."""
    policies = route_policies(create_app(Settings()))
    here: list[str] = []
    elsewhere: list[str] = []
    for (method, path), allowed in sorted(policies.items()):
        if not path.startswith(PROTECTED) or not allowed or role.value in allowed:
            continue
        first_refused = next(other for other in ROLES if other.value not in allowed)
        (here if first_refused is role else elsewhere).append(f"{method} {path}")
    return here, elsewhere


def _allowed_earlier(role: Role) -> list[str]:
    """The operations this role may call that a role before it in ROLES may call too. That role's run
    sends them every edge case of the schema (the coverage phase, which ignores --max-examples and is
    most of a run's time); this role's run sends them examples, random and stateful requests, where
    what it may see and do differs. Every operation still meets the coverage phase once."""
    policies = route_policies(create_app(Settings()))
    earlier = ROLES[: ROLES.index(role)]
    return [
        f"{method} {path}"
        for (method, path), allowed in sorted(policies.items())
        if path.startswith(PROTECTED)
        and allowed
        and role.value in allowed
        and any(other.value in allowed for other in earlier)
    ]


def _reference(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Real territory codes and listing ids of the run's database: the communes of the demo listings and
    the 200 most populous, every collectivité, département and région, every active listing."""

    def column(sql: str) -> list[str]:
        return [str(value) for (value,) in conn.execute(sql)]

    communes = conn.execute(
        """SELECT code, ST_X(point), ST_Y(point) FROM commune
            WHERE point IS NOT NULL
              AND (code IN (SELECT commune_code FROM location)
                   OR code IN (SELECT code FROM commune WHERE point IS NOT NULL
                                ORDER BY population DESC NULLS LAST, code LIMIT 200))
            ORDER BY code"""
    ).fetchall()
    by_org: dict[str, dict[str, list[str]]] = {"services": {}, "locations": {}, "areas": {}}
    service_organisation: dict[str, str] = {}
    for kind, sql in (
        ("services", "SELECT organisation_id, id FROM service WHERE archived_at IS NULL ORDER BY id"),
        ("locations", "SELECT organisation_id, id FROM location WHERE archived_at IS NULL ORDER BY id"),
        (
            "areas",
            """SELECT s.organisation_id, a.id FROM service_area a JOIN service s ON s.id = a.service_id
                WHERE a.archived_at IS NULL ORDER BY a.id""",
        ),
    ):
        for organisation, record in conn.execute(sql):
            by_org[kind].setdefault(str(organisation), []).append(str(record))
            if kind == "services":
                service_organisation[str(record)] = str(organisation)
    return {
        "communes": [code for code, _, _ in communes],
        "commune_points": {code: [round(x, 6), round(y, 6)] for code, x, y in communes},
        "postal_codes": sorted(
            {
                postal
                for (codes,) in conn.execute(
                    "SELECT postal_codes FROM commune WHERE code = ANY(%s)", ([code for code, _, _ in communes],)
                )
                for postal in codes
            }
        ),
        "collectivites": column("SELECT code FROM collectivite ORDER BY code"),
        "departements": column("SELECT code FROM departement ORDER BY code"),
        "regions": column("SELECT code FROM region ORDER BY code"),
        "organisations": column("SELECT id FROM organisation WHERE deactivated_at IS NULL ORDER BY id"),
        "services": sorted(record for records in by_org["services"].values() for record in records),
        "locations": sorted(record for records in by_org["locations"].values() for record in records),
        "areas": sorted(record for records in by_org["areas"].values() for record in records),
        "service_organisation": service_organisation,
        **{f"by_org:{kind}": records for kind, records in by_org.items()},
    }


def _problems(report: dict[str, Any]) -> list[str]:
    problems = []
    operations = report.get("operations") or {}
    if not report.get("complete"):
        problems.append(f"the run did not complete (stop reason: {report.get('stop_reason')})")
    for failure in report.get("failures", []):
        names = ", ".join(failure.get("operations", []))
        problems.append(f"failure: {failure['title']} ×{failure['count']} — {names}")
    for error in report.get("errors", []):
        problems.append(f"error: {error['title']} ×{error['count']}")
    if operations.get("tested") != operations.get("selected") or operations.get("errored"):
        problems.append(
            "operations: {tested} tested of {selected} selected, {errored} errored, {skipped} skipped {reasons}".format(
                tested=operations.get("tested"),
                selected=operations.get("selected"),
                errored=operations.get("errored"),
                skipped=operations.get("skipped"),
                reasons=operations.get("skip_reasons") or "",
            )
        )
    if report.get("test_cases", {}).get("errored"):
        problems.append(f"test cases errored: {report['test_cases']['errored']}")
    return problems


def _summary_line(label: str, report: dict[str, Any]) -> str:
    operations = report.get("operations") or {}
    cases = report.get("test_cases") or {}
    failures = sum(failure.get("count", 0) for failure in report.get("failures", []))
    errors = sum(error.get("count", 0) for error in report.get("errors", []))
    return (
        f"schemathesis {label}: {operations.get('tested')}/{operations.get('selected')} operations tested, "
        f"{cases.get('generated')} test cases, {failures} failures, {errors} errors, "
        f"{report.get('running_time') or 0:.1f} s"
    )


def _publish(line: str, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """One line per role in the pytest output even without -s, and in a file next to the reports."""
    with (tmp_path_factory.getbasetemp() / "schemathesis-summary.txt").open("a") as summary:
        summary.write(line + "\n")
    with capsys.disabled():
        sys.stdout.write(f"\n{line}\n")


_SECTION = re.compile(r"^=+ (?P<name>[A-Z][A-Za-z ]+) =+$", re.MULTILINE)


def _excerpt(output: str, limit: int = 60_000) -> str:
    """From the CLI's ERRORS or FAILURES section to its end (warnings and summary included): what broke,
    with the curl commands that reproduce it."""
    start = next(
        (match.start() for match in _SECTION.finditer(output) if match["name"] in ("ERRORS", "FAILURES")), None
    )
    text = output[start:] if start is not None else output[-8000:]
    if len(text) > limit:
        text = text[: limit // 2] + "\n[… cut: see the full output file …]\n" + text[-limit // 2 :]
    return text


# A record of the server's log starts with its timestamp (structlog) or its level (uvicorn).
_RECORD_START = re.compile(r"^(?=\d{4}-\d\d-\d\dT|[A-Z]+: )", re.MULTILINE)


def _server_errors(log: Path, offset: int, limit: int = 12_000) -> str:
    """The error records the server logged since `offset`, tracebacks included (a 500's cause); each
    distinct one once, since shrinking repeats a failure many times."""
    text = log.read_bytes()[offset:].decode(errors="replace")
    distinct: dict[str, str] = {}
    for record in _RECORD_START.split(text):
        if re.match(r"\S+ \[(error|critical)|(ERROR|CRITICAL): ", record):
            distinct.setdefault(record.split(" ", 1)[-1], record)
    found = "".join(distinct.values())
    return found if len(found) <= limit else found[:limit] + "\n[…]"


def _without_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """The server is on 127.0.0.1: a CI's HTTP(S)_PROXY must not route the fuzzer's requests elsewhere."""
    return {key: value for key, value in environ.items() if not key.lower().endswith("_proxy")}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        died = server.died()
        if died is not None:
            pytest.fail(died)
        try:
            response = httpx.get(f"{server.base_url}/readyz", timeout=5.0, trust_env=False)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:500]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.2)
    pytest.fail(f"the server was not ready within {READY_TIMEOUT:.0f} s (last: {last})\n{_tail(server.log)}")


def _tail(log: Path, size: int = 6000) -> str:
    try:
        return log.read_bytes()[-size:].decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
