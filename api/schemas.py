"""Response schemas. Hot routes return JSON built in SQL; these models document it in OpenAPI and
let tests validate what the SQL produced."""

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from .params import PointIn, StrictModel


class CodeName(BaseModel):
    code: str
    name: str


class CripRef(BaseModel):
    id: uuid.UUID
    name: str


class Resolution(BaseModel):
    commune: CodeName
    departement: CodeName
    region: CodeName
    collectivite: CodeName = Field(description="The collectivité that runs child protection here.")
    crip: CripRef | None = Field(description="The CRIP to alert for this place.")
    match: Literal["inside", "nearest"] = Field(
        description="`inside` a commune boundary, or `nearest` commune within 2 km (coastline gaps)."
    )


class ResolveBatchIn(StrictModel):
    points: list[PointIn] = Field(min_length=1, max_length=1000)


class ResolveBatchOut(BaseModel):
    results: list[Resolution | None] = Field(description="One entry per point, in order; null outside France.")


class Link(BaseModel):
    rel: str
    href: str
    type: str


class TerritoryFeature(BaseModel):
    type: Literal["Feature"]
    id: str
    geometry: dict[str, Any] | None = Field(description="GeoJSON MultiPolygon, or null with geometry=none.")
    properties: dict[str, Any]


class TerritoryCollection(BaseModel):
    type: Literal["FeatureCollection"]
    features: list[TerritoryFeature]
    links: list[Link]


class CommuneOut(BaseModel):
    code: str
    name: str
    postal_codes: list[str]
    population: int | None
    departement: CodeName
    collectivite: dict[str, str]
    point: dict[str, Any] | None = Field(description="GeoJSON Point of the mairie (or a point inside the commune).")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    migration: str
