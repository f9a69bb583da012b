"""Query parameter and body field types shared by the routes, with the limits of DESIGN §3."""

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field, Strict

from directory.schemas import Input

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
