"""The document says exactly what the server does (issue 10): errors as problem+json, the media types and
statuses really served, the request headers the server reads and the response headers it sends."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from api.errors import PROBLEM_JSON
from api.etags import if_match, optional_if_match
from api.responses import GeoJSONText

PROBLEM_REF = "#/components/schemas/Problem"
# 201s whose created thing has no URL of its own (an event is an item of its case's pathway, linked
# to it): the server sends no Location, so none is documented.
_NO_LOCATION = {("post", "/v1/cases/{case_id}/events")}


@pytest.fixture(scope="module")
def spec(base_app: FastAPI) -> dict[str, Any]:
    return base_app.openapi()


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def _headers(response: dict[str, Any]) -> set[str]:
    return set(response.get("headers", {}))


def _routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute, Dependant]]:
    """(method, path, route, dependant) for every documented operation."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in context.methods or ():
                yield method, str(context.path), route, context.dependant


def _calls(dependant: Dependant) -> Iterator[object]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def test_errors_are_documented_only_as_problem_json(spec: dict[str, Any]) -> None:
    for method, path, operation in _operations(spec):
        for status, response in operation["responses"].items():
            if status[0] not in "45":
                continue
            content = response.get("content", {})
            assert set(content) == {PROBLEM_JSON}, f"{method} {path} {status}: {sorted(content)}"
            assert content[PROBLEM_JSON]["schema"] == {"$ref": PROBLEM_REF}, f"{method} {path} {status}"
    assert "Problem" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"], "FastAPI's own 422 shape is documented"


def test_error_headers(spec: dict[str, Any]) -> None:
    for method, path, operation in _operations(spec):
        for status, response in operation["responses"].items():
            if status == "401":
                assert "WWW-Authenticate" in _headers(response), f"{method} {path}"
            if status in ("429", "503"):
                assert "Retry-After" in _headers(response), f"{method} {path} {status}"


def test_every_operation_reaching_the_database_documents_503(spec: dict[str, Any]) -> None:
    # Every /v1 operation takes a reader connection first (api.app.authentication_first); so does /readyz.
    for method, path, operation in _operations(spec):
        if path.startswith("/v1") or path == "/readyz":
            assert "503" in operation["responses"], f"{method} {path}"


def test_success_statuses_and_headers(spec: dict[str, Any]) -> None:
    for method, path, operation in _operations(spec):
        statuses = set(operation["responses"])
        if statuses & {"201", "204"}:
            assert "200" not in statuses, f"{method} {path} documents a 200 it never answers"
        if "201" in statuses and (method, path) not in _NO_LOCATION:
            assert "Location" in _headers(operation["responses"]["201"]), f"{method} {path}"


def test_success_is_documented_under_the_media_type_served(base_app: FastAPI, spec: dict[str, Any]) -> None:
    routes = list(_routes(base_app))
    assert len(routes) > 50
    for method, path, route, _ in routes:
        status = str(route.status_code or 200)
        content = spec["paths"][path][method.lower()]["responses"][status].get("content", {})
        if status == "204":
            assert not content, f"{method} {path}"
            continue
        response_class = getattr(route.response_class, "value", route.response_class)  # unwrap FastAPI's Default
        media_type = response_class.media_type or "application/json"
        assert media_type in content, f"{method} {path}: {sorted(content)}"
        if response_class is GeoJSONText:
            assert set(content) == {media_type}, f"{method} {path}: {sorted(content)}"


def test_request_headers_the_server_reads(base_app: FastAPI, spec: dict[str, Any]) -> None:
    conditional = [(method, path) for method, path, _, dependant in _routes(base_app) if if_match in _calls(dependant)]
    assert len(conditional) >= 9
    for method, path in conditional:
        where = f"{method} {path}"
        operation = spec["paths"][path][method.lower()]
        headers = {p["name"]: p["required"] for p in operation.get("parameters", []) if p["in"] == "header"}
        assert headers.get("If-Match") is True, where
        assert {"412", "428"} <= set(operation["responses"]), where
        assert method == "DELETE" or "ETag" in _headers(operation["responses"]["200"]), where
    # If-Match optional (backwards-compatible): documented as not required, never answered with a 428.
    optional = {
        (method, path) for method, path, _, dependant in _routes(base_app) if optional_if_match in _calls(dependant)
    }
    assert optional == {
        ("POST", "/v1/services/{service_id}/closures"),
        ("POST", "/v1/services/{service_id}/reopen"),
        ("POST", "/v1/services/{service_id}/verify"),
    }
    for method, path in optional:
        where = f"{method} {path}"
        operation = spec["paths"][path][method.lower()]
        headers = {p["name"]: p["required"] for p in operation.get("parameters", []) if p["in"] == "header"}
        assert headers.get("If-Match") is False, where
        assert "optional" in operation["description"], where
        assert "412" in operation["responses"], where
        assert "428" not in operation["responses"], where
        assert "ETag" in _headers(operation["responses"]["200"]), where
    handoff = spec["paths"]["/v1/handoffs"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in handoff.get("parameters", []) if p["in"] == "header"}
    assert "400" in handoff["responses"]


def test_csv_statistics_document_their_attachment(spec: dict[str, Any]) -> None:
    ok = spec["paths"]["/v1/stats/handoffs"]["get"]["responses"]["200"]
    assert "text/csv" in ok["content"]
    assert "Content-Disposition" in _headers(ok)


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _body_properties(spec: dict[str, Any], content: dict[str, Any]) -> set[str]:
    schema = _resolve(spec, next(iter(content.values()))["schema"])
    names = set(schema.get("properties", {}))
    for option in schema.get("oneOf", []):
        names |= set(_resolve(spec, option).get("properties", {}))
    return names


def test_every_link_leads_somewhere_real(spec: dict[str, Any]) -> None:
    """Each OpenAPI link names an operation that exists, parameters that operation has, and values
    the source response (or request) really carries."""
    by_id = {operation["operationId"]: operation for _, _, operation in _operations(spec)}
    links = 0
    for method, path, operation in _operations(spec):
        source_path_parameters = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        for status, response in operation["responses"].items():
            for name, link in response.get("links", {}).items():
                links += 1
                where = f"{method} {path} {status} {name}"
                target = by_id.get(link["operationId"])
                assert target is not None, where
                declared = {(p["in"], p["name"]) for p in target.get("parameters", [])}
                for parameter, expression in link.get("parameters", {}).items():
                    assert tuple(parameter.split(".", 1)) in declared, where
                    if expression.startswith("$response.body#/"):
                        member = expression.removeprefix("$response.body#/")
                        assert member in _body_properties(spec, response["content"]), where
                    elif expression.startswith("$response.header."):
                        assert expression.removeprefix("$response.header.") in response.get("headers", {}), where
                    else:
                        assert expression.removeprefix("$request.path.") in source_path_parameters, where
                for member, expression in link.get("requestBody", {}).items():
                    assert member in _body_properties(spec, target["requestBody"]["content"]), where
                    assert (
                        expression.removeprefix("$response.body#/") in _body_properties(spec, response["content"])
                        or expression.removeprefix("$request.path.") in source_path_parameters
                    ), where
    assert links >= 40


def test_the_care_pathway_can_be_followed_by_links(spec: dict[str, Any]) -> None:
    """case → handoff → transition → pathway, as a client (or a stateful test) walks it."""
    by_id = {operation["operationId"]: operation for _, _, operation in _operations(spec)}

    def targets(operation_id: str, status: str) -> set[str]:
        return {link["operationId"] for link in by_id[operation_id]["responses"][status].get("links", {}).values()}

    assert "create_handoff" in targets("create_case", "201")
    assert "transition_handoff" in targets("create_handoff", "201")
    assert "case_pathway" in targets("transition_handoff", "200")
    assert {"update_service", "set_capacity"} <= targets("get_service", "200")
