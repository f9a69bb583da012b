"""Secrets created on first use by processes that start together (several server workers, the job
worker): each must end up with the same, complete secret. A CI run once failed on a half-written
signing key read by a second process."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from api.app import load_or_create_secret
from api.tokens import KeyStore


def _kid(directory: str) -> str:
    return KeyStore.load_or_create(Path(directory)).signing_key.kid


def _secret(path: str) -> str:
    return load_or_create_secret(Path(path)).hex()


def _all_at_once(function, argument: str, count: int = 12) -> list[str]:
    with multiprocessing.get_context("fork").Pool(count) as pool:
        return pool.map(function, [argument] * count)


def test_processes_starting_together_share_one_signing_key(tmp_path: Path) -> None:
    kids = _all_at_once(_kid, str(tmp_path / "keys"))
    assert len(set(kids)) == 1
    files = list((tmp_path / "keys").iterdir())
    assert [f.name for f in files] == ["signing-first.pem"]  # no second key, no temporary left behind
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert KeyStore.load_or_create(tmp_path / "keys").signing_key.kid == kids[0]  # kept on restart


def test_processes_starting_together_share_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "cursor-key"
    secrets = _all_at_once(_secret, str(path))
    assert len(set(secrets)) == 1
    assert len(secrets[0]) == 64
    assert sorted(p.name for p in path.parent.iterdir()) == ["cursor-key"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
