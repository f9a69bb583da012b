"""Errors raised by the geo package. HTTP-free: api/errors.py maps each `code` to a status."""

from typing import ClassVar


class GeoError(Exception):
    code: ClassVar[str] = "geo_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class OutsideFrance(GeoError):
    """The point is neither inside a French commune nor within 2 km of one (sea, abroad)."""

    code = "outside_france"


class UnknownTerritory(GeoError):
    code = "unknown_territory"
