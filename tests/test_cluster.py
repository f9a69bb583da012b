"""The managed cluster: it runs PostgreSQL as an unprivileged user and finds a reachable home."""

import os
import shutil
from pathlib import Path

import psycopg
import pytest

from api.cluster import Cluster
from api.settings import REPO_ROOT
from tests.database import plain


def test_the_project_cluster_is_running_as_the_postgres_user(cluster: Cluster) -> None:
    status = cluster.status()
    assert status["running"] is True
    with psycopg.connect(plain(cluster.url("postgres"))) as conn:
        user, address, postgis = conn.execute(
            "SELECT current_setting('data_directory') IS NOT NULL, inet_server_addr()::text,"
            " (SELECT default_version FROM pg_available_extensions WHERE name = 'postgis')"
        ).fetchone()
    assert address == "127.0.0.1/32"
    assert postgis
    owner = Path(str(status["data_dir"])).stat().st_uid
    if os.geteuid() == 0:
        assert owner != 0


def test_the_superuser_password_is_private(cluster: Cluster) -> None:
    assert cluster.password_file.stat().st_mode & 0o777 == 0o600
    assert cluster.password_file.parent.stat().st_mode & 0o077 == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback exists for root, whom PostgreSQL refuses")
def test_a_checkout_the_server_user_cannot_reach_keeps_its_cluster_under_var_tmp(tmp_path: Path) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    cluster = Cluster(private / "checkout" / "var")
    try:
        cluster.start()
        status = cluster.status()
        assert status["running"] is True
        assert status["inside_checkout"] is False
        assert str(status["data_dir"]).startswith("/var/tmp/maillage-")
        assert cluster.port != Cluster(REPO_ROOT / "var").port
        # A second start reuses it.
        cluster.start()
        assert Cluster(private / "checkout" / "var").status()["data_dir"] == status["data_dir"]
    finally:
        cluster.stop()
        shutil.rmtree(cluster.base.parent, ignore_errors=True)
    assert cluster.status()["running"] is False
