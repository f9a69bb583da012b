"""Request headers that a dependency reads and the OpenAPI document declares.

`If-Match` and `Idempotency-Key` are required, and the document says so (`If-Match` is optional on the
few writes that took none at first: `required=False`, and the document says that). Yet what their
absence means is the server's to decide, after the caller's scope is known (a 428 or a 400 only for a
record the caller may see; DESIGN §3) — never FastAPI's generic 422 before it. So they are not FastAPI `Header`
parameters: a `RequestHeader` reads the raw value, and `declare(router)` adds the parameter, with its
syntax as a pattern, to every operation whose dependencies use it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.utils import deep_dict_update


class RequestHeader:
    def __init__(self, name: str, *, description: str, pattern: str, max_length: int, required: bool = True) -> None:
        self.name = name
        self.parameter: dict[str, Any] = {
            "name": name,
            "in": "header",
            "required": required,
            "description": description,
            "schema": {"type": "string", "pattern": pattern, "maxLength": max_length},
        }

    def __call__(self, request: Request) -> str | None:
        """The field value, repeated lines joined as one list (RFC 9110 §5.3); None when absent."""
        values = request.headers.getlist(self.name)
        return ", ".join(values) if values else None


def _headers_of(dependant: Dependant) -> list[RequestHeader]:
    found: list[RequestHeader] = []
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, RequestHeader):
            found.append(dependency.call)
        found.extend(_headers_of(dependency))
    return found


def declare(router: APIRouter) -> None:
    """Declare, on each of the router's routes, the request headers its dependencies read. Call it
    before the router is included: an app keeps its own copy of each route's OpenAPI extras."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        extra = dict(route.openapi_extra or {})
        declared = {parameter["name"] for parameter in extra.get("parameters", ())}
        parameters = [
            header.parameter
            for header in {header.name: header for header in _headers_of(route.dependant)}.values()
            if header.name not in declared  # routers are module-level: a second app sees them declared
        ]
        if parameters:
            deep_dict_update(extra, {"parameters": parameters})
            route.openapi_extra = extra
