"""The black-box OGC API – Features conformance suite `ogctests` (PyPI, marked work in progress) against
/ogc, once, with its results per test. Not part of `make test`: the suite pins heavy dependencies
(geopandas, pyarrow…), so it lives in a virtualenv of its own under /tmp.

    .venv/bin/python bench/ogc_conformance.py [--keep-database]

What it does: a fresh database on the local cluster with the reference data and the demo listings; a
`maillage serve` on it; a token (specialist); a small reverse proxy on 127.0.0.1 that adds the bearer
header to every request, since the suite sends none (the server's public base URL is the proxy's, so
every link the suite follows goes through it too); then the suite's `features` scope (Part 1 core and
Part 3 filtering), and a summary of its JUnit report. Authentication is never weakened in the product.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import psycopg

from api.cluster import Cluster
from api.migrations_runner import upgrade
from api.settings import REPO_ROOT, Settings
from api.tokens import KeyStore, TokenService
from directory import coverage, hours, seeding
from directory.access import Role
from directory.demo import seed_demo
from geo.calendars import load_public_holidays
from geo.loading import load_territories

sys.path.insert(0, str(Path(__file__).parent))
from harness import free_port  # noqa: E402

SUITE = "ogctests==0.1.15"
VENV = Path(tempfile.gettempdir()) / "maillage-ogctests-venv"
DATABASE = "maillage_ogc_conformance"
SUITE_TIMEOUT = 1800


def database(cluster: Cluster) -> str:
    """A fresh database with the reference data and the demo listings (as `maillage seed --demo`)."""
    cluster.drop_database(DATABASE)
    cluster.ensure_database(DATABASE)
    upgrade(cluster.url(DATABASE))
    with psycopg.connect(cluster.url(DATABASE).replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        load_territories(conn)
        load_public_holidays(conn)
        seeding.seed_specialisms(conn)
        seeding.seed_hotline(conn)
        seeding.seed_crips(conn)
        seeding.seed_collective(conn, REPO_ROOT / "seeds")
        seed_demo(conn)
        coverage.refresh(conn)
        hours.refresh(conn)
    return cluster.app_url(DATABASE)


def suite_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", SUITE], check=True)
    return python


def proxy(port: int, upstream: int, token: str) -> http.server.ThreadingHTTPServer:
    """127.0.0.1:`port` → 127.0.0.1:`upstream`, every request with `Authorization: Bearer <token>`
    (any Authorization the client sent is replaced), HTTP/1.1 both ways, the Host header kept."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "connection")}
            headers["Authorization"] = f"Bearer {token}"
            connection = http.client.HTTPConnection("127.0.0.1", upstream, timeout=120)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            finally:
                connection.close()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_HEAD = do_POST = do_OPTIONS = _forward  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def summary(report: Path) -> int:
    """Each test's outcome and, for a failure or an error, the suite's message; the number failed."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                message = (element.get("message") or element.text or "").strip().splitlines()[0][:300]
        counts[outcome] += 1
        print(f"{outcome.upper():8} {name}" + (f"\n         {message}" if message else ""))
    print(", ".join(f"{count} {outcome}" for outcome, count in counts.items()))
    return counts["failed"] + counts["error"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-database", action="store_true", help="Leave the database for a look afterwards.")
    args = parser.parse_args()
    settings = Settings()
    cluster = Cluster(settings.var_dir)
    cluster.start()
    print(f"database {DATABASE}: reference data and demo listings…", flush=True)
    app_url = database(cluster)
    print(f"the suite's virtualenv ({VENV}): {SUITE}…", flush=True)
    python = suite_python()
    work = Path(tempfile.mkdtemp(prefix="maillage-ogc-conformance-"))
    tokens = TokenService(
        KeyStore.load_or_create(work / "keys"),
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        max_ttl=settings.token_max_ttl_seconds,
        leeway=settings.token_leeway_seconds,
    )
    api_port, proxy_port = free_port(), free_port()
    base = f"http://127.0.0.1:{proxy_port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAILLAGE_")}
    env.update(
        DATABASE_URL=app_url,
        MAILLAGE_VAR_DIR=str(work),
        MAILLAGE_PORT=str(api_port),
        MAILLAGE_PUBLIC_BASE_URL=base,  # every link leads through the proxy
        MAILLAGE_METRICS_PORT="0",
        MAILLAGE_GEOCODING_URL="",
    )
    env.pop("PORT", None)
    log = work / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "maillage"), "serve"], cwd=REPO_ROOT, env=env, stdout=sink, stderr=sink
        )
    forwarder = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")
        forwarder = proxy(proxy_port, api_port, tokens.issue(subject="ogctests", role=Role.specialist, ttl=900))
        failed = 0
        # One run per scope: each scope's conftest sorts every collected test by its own numbering.
        for scope in ("features/core", "features/filtering"):
            report = work / f"ogctests-{scope.replace('/', '-')}.xml"
            print(f"\nogctests {scope} against {base}/ogc …", flush=True)
            code = (
                "import sys; from ogctests.main import run_ogctests; "
                "sys.exit(run_ogctests(sys.argv[1], sys.argv[2], ['-q', '-p', 'no:cacheprovider', '--tb=line', "
                "'--junitxml=' + sys.argv[3]]))"
            )
            done = subprocess.run(
                [str(python), "-c", code, scope, f"{base}/ogc", str(report)],
                cwd=work,
                timeout=SUITE_TIMEOUT,
                capture_output=True,
                text=True,
                check=False,
            )
            (report.with_suffix(".log")).write_text(done.stdout + done.stderr)
            if not report.exists():
                print(done.stdout[-4000:], done.stderr[-4000:])
                return 2
            failed += summary(report)
        print(f"\n(the suite's own output and reports: {work}; the server's log: {log})")
        return 1 if failed else 0
    finally:
        if forwarder is not None:
            forwarder.shutdown()
        server.terminate()
        server.wait(timeout=30)
        if not args.keep_database:
            cluster.drop_database(DATABASE)


if __name__ == "__main__":
    sys.exit(main())
