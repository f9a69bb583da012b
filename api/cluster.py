"""The project-managed local PostGIS cluster used by `make run` and `make test` when DATABASE_URL is unset.

PostgreSQL refuses to run as root, so when we are root every server binary runs as the unprivileged
`postgres` system user, which must be able to reach the data directory. A checkout under a private
home (/root is mode 700) is not reachable: we then keep the cluster in a world-traversable place keyed
by the checkout path (/var/tmp/maillage-<hash>) and `maillage db status` says where.

The server listens on 127.0.0.1 only, with scram-sha-256 authentication; the superuser password is
generated on first start and kept under var/secrets (git-ignored). Unix-socket access is limited to
the server's own user.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import psycopg
from psycopg import sql

SERVER_USER = "postgres"
SUPERUSER = "postgres"
# The role the API connects as (its grants are in the migrations); the superuser runs migrations.
APP_ROLE = "maillage_app"
# What applies behind PgBouncer, which refuses the startup `options` (api/db.py).
APP_ROLE_DEFAULTS = {"statement_timeout": "5s", "jit": "off", "timezone": "UTC"}
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}


class ClusterError(RuntimeError):
    """The local cluster could not be installed, started or reached; the message says what to do."""


def _is_root() -> bool:
    return os.geteuid() == 0


def _run(
    cmd: Sequence[str], *, as_server_user: bool = False, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    drop = as_server_user and _is_root()
    if drop:
        full_env["HOME"] = pwd.getpwnam(SERVER_USER).pw_dir
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        list(cmd),
        capture_output=True,
        text=True,
        env=full_env,
        cwd="/",
        user=SERVER_USER if drop else None,
        group=SERVER_USER if drop else None,
        extra_groups=[] if drop else None,
    )
    if check and result.returncode != 0:
        raise ClusterError(f"{cmd[0]} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    return result


# --- server packages -------------------------------------------------------------------------


def _installed_majors() -> list[int]:
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return []
    return sorted(
        (int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / "bin" / "initdb").exists()),
        reverse=True,
    )


def _has_postgis(major: int) -> bool:
    return Path(f"/usr/share/postgresql/{major}/extension/postgis.control").exists()


def apt_install(*packages: str) -> None:
    """Install Debian packages (as root, or through sudo), updating the package lists only if needed."""
    prefix: list[str] = []
    if not _is_root():
        if not shutil.which("sudo"):
            raise ClusterError(
                "PostgreSQL/PostGIS are missing and we are not root: install "
                f"{' '.join(packages)} with your package manager, or set DATABASE_URL."
            )
        prefix = ["sudo", "-n"]
    if not shutil.which("apt-get"):
        raise ClusterError(f"No apt-get here: install {' '.join(packages)} yourself, or set DATABASE_URL.")
    # A fresh machine has no package lists yet; a failed install is retried once after an update.
    install = [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    if _run(install, check=False, env=APT_ENV).returncode != 0:
        _run([*prefix, "apt-get", "update", "-qq"], env=APT_ENV)
        _run(install, env=APT_ENV)


def ensure_server_packages() -> Path:
    """Return the bin directory of a PostgreSQL that has PostGIS, installing them when missing."""
    majors = _installed_majors()
    if not majors:
        apt_install("postgresql", "postgresql-contrib")
        majors = _installed_majors()
        if not majors:
            raise ClusterError("apt-get installed postgresql but no server binaries were found")
    for major in majors:
        if _has_postgis(major):
            return Path(f"/usr/lib/postgresql/{major}/bin")
    major = majors[0]
    apt_install(f"postgresql-{major}-postgis-3")
    if not _has_postgis(major):
        raise ClusterError(f"postgresql-{major}-postgis-3 installed but postgis.control is missing")
    return Path(f"/usr/lib/postgresql/{major}/bin")


# --- the cluster -----------------------------------------------------------------------------


def _reachable_by_server_user(path: Path) -> bool:
    if not _is_root():
        return True
    return _run(["test", "-w", str(path), "-a", "-x", str(path)], as_server_user=True, check=False).returncode == 0


@dataclass(frozen=True)
class Cluster:
    """A PostgreSQL cluster owned by this checkout. Cheap to build: it only computes paths."""

    var_dir: Path

    def __post_init__(self) -> None:
        # Server binaries run with cwd=/ and possibly as another user: every path must be absolute.
        object.__setattr__(self, "var_dir", self.var_dir.resolve())

    @cached_property
    def base(self) -> Path:
        preferred = self.var_dir / "pg"
        if not _is_root() or (preferred / "data").exists():
            return preferred
        fallback_marker = self.var_dir / "pg-outside-checkout"
        if not fallback_marker.exists():
            preferred.mkdir(parents=True, exist_ok=True)
            shutil.chown(preferred, SERVER_USER, SERVER_USER)
            if _reachable_by_server_user(preferred):
                return preferred
            preferred.rmdir()
            fallback_marker.write_text("the server user cannot reach var/: the cluster lives under /var/tmp\n")
        digest = hashlib.sha256(str(self.var_dir.resolve()).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"maillage-{digest}" / "pg"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "run"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    @property
    def port_file(self) -> Path:
        return self.base / "port"

    @property
    def password_file(self) -> Path:
        return self.var_dir / "secrets" / "pg-superuser-password"

    # -- lifecycle --

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        with open(self.var_dir / ".cluster.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start(self) -> None:
        """Install, initialise and start the cluster as needed; a no-op when it already runs."""
        with self._lock():
            bindir = ensure_server_packages()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(bindir)
            if self._running(bindir):
                self.ensure_app_role()
                return
            port = self._choose_port()
            self.socket_dir.mkdir(parents=True, exist_ok=True)
            self._chown(self.socket_dir)
            options = f"-p {port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"
            result = _run(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    "120",
                    "-o",
                    options,
                    "start",
                ],
                as_server_user=True,
                check=False,
            )
            if result.returncode != 0:
                raise ClusterError(f"PostgreSQL did not start; see {self.log_file}: {result.stderr.strip()}")
            self.port_file.write_text(f"{port}\n")
            self.ensure_app_role()

    def stop(self) -> bool:
        """Stop the cluster; returns False when it was not running."""
        with self._lock():
            bindir = ensure_server_packages()
            if not self._running(bindir):
                return False
            _run([str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], as_server_user=True)
            return True

    def status(self) -> dict[str, object]:
        running = False
        if (self.data_dir / "PG_VERSION").exists():
            majors = _installed_majors()
            running = bool(majors) and self._running(Path(f"/usr/lib/postgresql/{majors[0]}/bin"))
        return {
            "running": running,
            "data_dir": str(self.data_dir),
            "inside_checkout": self.base == self.var_dir / "pg",
            "port": self.port if self.port_file.exists() else None,
            "log": str(self.log_file),
        }

    @property
    def port(self) -> int:
        try:
            return int(self.port_file.read_text().strip())
        except FileNotFoundError as exc:
            raise ClusterError("the local cluster has never been started: run `maillage db start`") from exc

    @property
    def app_password_file(self) -> Path:
        return self.var_dir / "secrets" / "pg-app-password"

    def url(self, database: str, *, driver: str = "postgresql+psycopg") -> str:
        """The superuser's URL: migrations, seeds, retention."""
        password = self.password_file.read_text().strip()
        return f"{driver}://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{database}"

    def app_url(self, database: str, *, driver: str = "postgresql+psycopg") -> str:
        """The application role's URL: what the API uses."""
        password = self.app_password_file.read_text().strip()
        return f"{driver}://{APP_ROLE}:{password}@127.0.0.1:{self.port}/{database}"

    def ensure_app_role(self) -> None:
        """Create (or re-enable) the application's login role with its generated password, and its
        session defaults. The migrations set those too (d4e6b0c1a2f9), but they belong to the cluster,
        not to a database: a database restored into a fresh cluster would be served without them."""
        if not self.app_password_file.exists():
            self.app_password_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.app_password_file.touch(mode=0o600)
            self.app_password_file.write_text(secrets.token_urlsafe(24) + "\n")
        password = self.app_password_file.read_text().strip()
        with psycopg.connect(self.url("postgres", driver="postgresql"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
            verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                    verb, sql.Identifier(APP_ROLE), sql.Literal(password)
                )
            )
            for name, value in APP_ROLE_DEFAULTS.items():
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        sql.Identifier(APP_ROLE), sql.Identifier(name), sql.Literal(value)
                    )
                )

    def ensure_database(self, name: str, *, template: str | None = None) -> bool:
        """Create `name` if it does not exist; returns True when it was created."""
        with psycopg.connect(self.url("postgres", driver="postgresql"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
            conn.execute(statement)
            return True

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url("postgres", driver="postgresql"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # -- internals --

    def _running(self, bindir: Path) -> bool:
        if not self.data_dir.exists():
            return False
        result = _run([str(bindir / "pg_ctl"), "-D", str(self.data_dir), "status"], as_server_user=True, check=False)
        return result.returncode == 0

    def _chown(self, path: Path) -> None:
        if _is_root():
            shutil.chown(path, SERVER_USER, SERVER_USER)

    def _initdb(self, bindir: Path) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self._chown(self.base)
        if self.base.parent.name.startswith("maillage-"):
            self.base.parent.chmod(0o711)
        self.password_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
            self.password_file.chmod(0o600)
        pwfile = self.base / ".initdb-pw"
        pwfile.write_text(self.password_file.read_text())
        self._chown(pwfile)
        try:
            _run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ],
                as_server_user=True,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        # Settings for a development and test server. Durability stays on: the crash tests rely on it.
        (self.data_dir / "postgresql.auto.conf").open("a").write(
            "max_connections = 200\n"
            "shared_buffers = '512MB'\n"
            "work_mem = '32MB'\n"
            "maintenance_work_mem = '256MB'\n"
            "timezone = 'UTC'\n"
            "log_min_messages = warning\n"
        )

    def _choose_port(self) -> int:
        candidates = []
        if self.port_file.exists():
            candidates.append(int(self.port_file.read_text().strip()))
        digest = int(hashlib.sha256(str(self.data_dir).encode()).hexdigest(), 16)
        candidates.append(54320 + digest % 600)
        for port in candidates:
            if _port_free(port):
                return port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
