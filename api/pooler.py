"""A local PgBouncer in transaction mode in front of the project's cluster: what production puts between
many API processes and PostgreSQL, run here by the tests and the bench to show the API works behind it.

Debian 12's PgBouncer (1.18) refuses the `options` startup parameter and keeps no prepared statement
across transactions: the API behind it runs with `startup_options=false` and
`prepared_statements=false` (api/settings.py); the role's own defaults set the session. The worker
never goes through it (LISTEN/NOTIFY needs a session of its own).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .cluster import APP_ROLE, SERVER_USER, Cluster, ClusterError, apt_install

BINARY = "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_pgbouncer() -> str:
    """The distribution's pgbouncer, installed when missing."""
    if not Path(BINARY).exists():
        apt_install("pgbouncer")
    if not Path(BINARY).exists():
        raise ClusterError("apt-get installed pgbouncer but /usr/sbin/pgbouncer is missing")
    return BINARY


class PgBouncer:
    """`with PgBouncer(cluster, database) as bouncer:` serves `database` as the application role on
    `bouncer.app_url`, pooled per transaction, until the block ends."""

    def __init__(self, cluster: Cluster, database: str, *, pool_size: int = 20) -> None:
        self.cluster = cluster
        self.database = database
        self.pool_size = pool_size
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.directory: Path | None = None

    @property
    def app_url(self) -> str:
        password = self.cluster.app_password_file.read_text().strip()
        return f"postgresql+psycopg://{APP_ROLE}:{password}@127.0.0.1:{self.port}/{self.database}"

    def __enter__(self) -> PgBouncer:
        binary = ensure_pgbouncer()
        # Where the server user can read its configuration (a root-owned temp dir may be closed to it).
        self.directory = Path(tempfile.mkdtemp(prefix="maillage-pgbouncer-", dir="/var/tmp"))
        password = self.cluster.app_password_file.read_text().strip()
        userlist = self.directory / "userlist.txt"
        userlist.write_text(f'"{APP_ROLE}" "{password}"\n')
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            f"""[databases]
{self.database} = host=127.0.0.1 port={self.cluster.port} dbname={self.database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {userlist}
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = 500
logfile = {self.directory / "pgbouncer.log"}
pidfile = {self.directory / "pgbouncer.pid"}
"""
        )
        root = os.geteuid() == 0
        if root:  # pgbouncer refuses to run as root
            entry = pwd.getpwnam(SERVER_USER)
            for path in (self.directory, userlist, config):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(userlist, 0o600)
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv
            [binary, str(config)],
            user=SERVER_USER if root else None,
            group=SERVER_USER if root else None,
            extra_groups=[] if root else None,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.directory / "pgbouncer.log"
                raise ClusterError(f"pgbouncer exited: {log.read_text() if log.exists() else ''}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise ClusterError("pgbouncer did not start listening")

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
