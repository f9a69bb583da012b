"""The committed OpenAPI document is the contract partners build against: any change is a reviewed diff."""

from fastapi import FastAPI

from api.app import openapi_document
from api.cli import OPENAPI_PATH


def test_committed_openapi_matches_the_app(base_app: FastAPI) -> None:
    assert OPENAPI_PATH.read_text() == openapi_document(base_app), "run `make openapi` and commit the result"


def test_every_v1_operation_documents_bearer_auth_and_problems(base_app: FastAPI) -> None:
    spec = base_app.openapi()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1") or path == "/v1/auth/token":  # the token endpoint takes client credentials
            continue
        for method, operation in operations.items():
            assert {"HTTPBearer": []} in operation["security"], f"{method} {path}"
            assert {"401", "403"} <= set(operation["responses"]), f"{method} {path}"
            assert operation.get("description"), f"{method} {path} needs a docstring"
