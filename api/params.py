"""Query parameter and body field types shared by the routes, with the limits of DESIGN §3."""

from typing import Annotated

from fastapi import Query
from pydantic import Field, Strict

from directory.schemas import Input, Text

LATITUDE = Query(ge=-90, le=90, allow_inf_nan=False, description="Latitude in decimal degrees (WGS 84).")
LONGITUDE = Query(ge=-180, le=180, allow_inf_nan=False, description="Longitude in decimal degrees (WGS 84).")
Latitude = Annotated[float, LATITUDE]
Longitude = Annotated[float, LONGITUDE]
DEPARTEMENT_CODE = r"^(?:0[1-9]|1[0-9]|2[1-9AB]|[3-8][0-9]|9[0-5]|97[1-46])$"
Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1 to 100).")]
Cursor = Annotated[
    Text | None, Query(max_length=512, description="Opaque cursor from the `next` link of a previous page.")
]


# JSON numbers only: "45" or true is not a coordinate (no silent coercion).
Number = Annotated[float, Strict()]


class PointIn(Input):
    lat: Number = Field(ge=-90, le=90, description="Latitude in decimal degrees (WGS 84).")
    lon: Number = Field(ge=-180, le=180, description="Longitude in decimal degrees (WGS 84).")
