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
