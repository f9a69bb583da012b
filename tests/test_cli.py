import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.app import build_token_service
from api.cli import app
from api.settings import Settings
from directory.access import Role


@pytest.fixture
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MAILLAGE_VAR_DIR", str(tmp_path))
    return tmp_path


def test_tokens_issue_prints_a_token_the_api_accepts(var: Path) -> None:
    org = uuid.uuid4()
    result = CliRunner().invoke(app, ["tokens", "issue", "--role", "partner", "--org", str(org), "--ttl", "120"])
    assert result.exit_code == 0, result.output
    principal = build_token_service(Settings(var_dir=var)).verify(result.output.strip())
    assert (principal.role, principal.organisation_id) == (Role.partner, org)
    assert (var / "keys").stat().st_mode & 0o777 == 0o700
    assert all(key.stat().st_mode & 0o777 == 0o600 for key in (var / "keys").glob("*.pem"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "partner"], "org claim"),
        (["--role", "department"], "collectivite claim"),
        (["--role", "specialist", "--ttl", "3600"], "ttl"),
        (["--role", "department", "--collectivite", "nowhere"], "collectivité code"),
    ],
)
def test_tokens_issue_refuses_incomplete_tokens(var: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["tokens", "issue", *args])
    assert result.exit_code == 1
    assert message in result.output


def test_tokens_issue_rejects_unknown_roles(var: Path) -> None:
    result = CliRunner().invoke(app, ["tokens", "issue", "--role", "root"])
    assert result.exit_code == 2


def test_bindings_are_added_listed_and_revoked(
    var: Path, database_url: str, owner_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`maillage bindings` against the application database, for a configured provider only."""
    import json

    import psycopg

    from tests.database import plain

    issuer = "https://login.cli.example"
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MAILLAGE_OIDC_ISSUERS", json.dumps([{"issuer": issuer, "audience": "maillage-api"}]))
    runner = CliRunner()
    try:
        added = runner.invoke(
            app,
            [
                "bindings",
                "add",
                "--issuer",
                issuer,
                "--claim",
                "groups",
                "--value",
                "crip-93",
                "--role",
                "department",
                "--collectivite",
                "93D",
            ],
        )
        assert added.exit_code == 0, added.output
        binding_id = added.output.split()[0]
        assert "groups=crip-93" in added.output
        listed = runner.invoke(app, ["bindings", "list", "--issuer", issuer])
        assert binding_id in listed.output
        assert "active" in listed.output
        revoked = runner.invoke(app, ["bindings", "revoke", binding_id])
        assert revoked.exit_code == 0
        assert "revoked" in revoked.output
        unknown = runner.invoke(
            app,
            [
                "bindings",
                "add",
                "--issuer",
                "https://nobody.example",
                "--claim",
                "groups",
                "--value",
                "x",
                "--role",
                "admin",
            ],
        )
        assert unknown.exit_code == 1
        assert "issuer: not a configured OpenID provider" in unknown.output
        unmapped = runner.invoke(
            app, ["bindings", "add", "--issuer", issuer, "--claim", "roles", "--value", "x", "--role", "admin"]
        )
        assert unmapped.exit_code == 1
        assert "claim: not one of" in unmapped.output
        no_scope = runner.invoke(
            app, ["bindings", "add", "--issuer", issuer, "--claim", "groups", "--value", "x", "--role", "department"]
        )
        assert no_scope.exit_code == 1
        assert "needs an existing collectivité" in no_scope.output
    finally:
        with psycopg.connect(plain(owner_url)) as conn:
            conn.execute("DELETE FROM identity_binding WHERE issuer = %s", (issuer,))
    with psycopg.connect(plain(owner_url)) as conn:
        assert conn.execute("SELECT count(*) FROM identity_binding WHERE issuer = %s", (issuer,)).fetchone() == (0,)


def test_export_hsds_writes_a_valid_dump_of_the_published_directory(
    var: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`maillage export hsds DIR` on the seeded directory (CRIPs, the collective's members): every line
    of every file is an HSDS 3.0 object, and the counts it prints are the files' (the API's own tests
    compare the dump with the HSDS API on listings with places and safe houses)."""
    import json

    import psycopg

    from tests import hsds_schemas
    from tests.database import plain

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MAILLAGE_PUBLIC_BASE_URL", "https://maillage.example")
    out = var / "hsds"
    result = CliRunner().invoke(app, ["export", "hsds", str(out)])
    assert result.exit_code == 0, result.output
    with psycopg.connect(plain(database_url)) as conn:
        row = conn.execute("SELECT count(*) FROM organisation WHERE deactivated_at IS NULL").fetchone()
    assert row is not None
    for name in hsds_schemas.TABLE:
        lines = (out / f"{name}.ndjson").read_text().splitlines()
        assert f"{len(lines)} {name} → {out / (name + '.ndjson')}" in result.output
        for line in lines:
            hsds_schemas.check(hsds_schemas.TABLE[name], json.loads(line))
    assert len((out / "organizations.ndjson").read_text().splitlines()) == row[0]
    assert not list(out.glob("*.partial"))
    taxonomy = json.loads((out / "taxonomies.ndjson").read_text().splitlines()[0])
    assert taxonomy["uri"] == "https://maillage.example/v1/specialisms"
