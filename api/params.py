"""Query parameter and body field types shared by the routes, with the limits of DESIGN §3."""

import re
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, Strict

from directory.schemas import Input

from .errors import InvalidParameter
from .pagination import CURSOR_SYNTAX

LATITUDE = Query(ge=-90, le=90, allow_inf_nan=False, description="Latitude in decimal degrees (WGS 84).")
LONGITUDE = Query(ge=-180, le=180, allow_inf_nan=False, description="Longitude in decimal degrees (WGS 84).")
Latitude = Annotated[float, LATITUDE]
Longitude = Annotated[float, LONGITUDE]
DEPARTEMENT_CODE = r"^(?:0[1-9]|1[0-9]|2[1-9AB]|[3-8][0-9]|9[0-5]|97[1-46])$"
Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1 to 100).")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=512,
        pattern=CURSOR_SYNTAX,
        description="Opaque cursor from the `next` link of a previous page (signed: only the server makes them).",
    ),
]


def merge_patch(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a PATCH route: the body may also be sent as `application/merge-patch+json`
    (RFC 7396), with the same schema as its `application/json` form."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"content": {"application/merge-patch+json": {"schema": schema}}}}


# JSON numbers only: "45" or true is not a coordinate (no silent coercion).
Number = Annotated[float, Strict()]


class PointIn(Input):
    lat: Number = Field(ge=-90, le=90, description="Latitude in decimal degrees (WGS 84).")
    lon: Number = Field(ge=-180, le=180, description="Longitude in decimal degrees (WGS 84).")


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


def defined_query_only(request: Request) -> None:
    """Refuse a query parameter the operation does not define, or one given twice, naming it (when it
    looks like a name: a caller's own text never comes back). For operations that follow a standard
    whose other parameters Maillage does not implement (HSDS, OGC API – Features): a filter silently
    ignored, or one value of two silently chosen, would read as applied. The operation's parameters are
    those FastAPI reads and those its document declares for the route to read itself (`openapi_extra`)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = (route.openapi_extra or {}).get("parameters", ())
    defined = _query_names(route.dependant) | {p["name"] for p in declared if p.get("in") == "query"}
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in defined:
            shown = name if _IDENTIFIER.match(name) else "a query parameter"
            raise InvalidParameter(shown, "this operation defines no such parameter")
        if name in seen:
            raise InvalidParameter(name, "give it at most once")
        seen.add(name)


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
