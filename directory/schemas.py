"""What partners may write, field by field (OWASP API3: mass assignment).

Every input model forbids unknown fields, so server-owned ones (organisation, verification, status,
demo flag, ids, timestamps) are refused with a 422 rather than silently ignored. Strings are bounded
and printable; numbers are JSON numbers; phones, e-mails, URLs, codes and opening hours are checked
here, before any SQL. Checks that need the database (a point inside France, consistent with its
commune) live in the modules of each entity (directory/locations.py, areas.py, services.py).
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    Strict,
    UrlConstraints,
    model_validator,
)

from .models import Audience, Capacity, Channel, Gender, OrganisationKind, Visibility
from .taxonomy import SLUGS


def printable(value: str) -> str:
    """Refuse what PostgreSQL or a log line cannot hold safely: NUL and other control characters, and
    lone surrogates (valid JSON escapes that are not encodable text)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("the text contains an unpaired surrogate") from exc
    if any((ord(ch) < 32 and ch not in "\t\n\r") or 0x7F <= ord(ch) < 0xA0 for ch in value):
        raise ValueError("the text contains control characters")
    return value


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value or "\t" in value:
        raise ValueError("must fit on one line")
    return value


# The same rules as patterns, so the OpenAPI document states them; the validators above keep the
# messages a person can act on ("the text contains control characters", not a regex).
PRINTABLE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
ONE_LINE = r"^[^\x00-\x1f\x7f-\x9f]*$"
_PRINTABLE = Field(json_schema_extra={"pattern": PRINTABLE})
_ONE_LINE = Field(json_schema_extra={"pattern": ONE_LINE})

# Free text is trimmed of the spaces around it, after its length is checked and before its other
# rules, so that what the document states about the text as sent is exactly what is accepted. Only
# spaces are trimmed, never control characters (the printable rule refuses those wherever they are),
# and one-line text keeps tabs and line breaks for `_one_line` to refuse.
_SPACES = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and not (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0))


def _trim_text(value: str) -> str:
    return value.strip(_SPACES + "\t\n\r")


def _trim_line(value: str) -> str:
    return value.strip(_SPACES)


# Text with something to read: "at least one character" means one that is not a space. The document
# states it as a pattern (the printable rule folded in); the validator refuses a blank value by name.
FILLED = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
FILLED_LINE = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"


def _filled(value: str) -> str:
    if not value:  # trimmed already
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, AfterValidator(_trim_text), AfterValidator(printable), _PRINTABLE]
Filled = Annotated[
    str,
    AfterValidator(_trim_text),
    AfterValidator(printable),
    AfterValidator(_filled),
    Field(json_schema_extra={"minLength": 1, "pattern": FILLED}),
]
Name = Annotated[
    str,
    Field(max_length=200),
    AfterValidator(_trim_line),
    AfterValidator(printable),
    AfterValidator(_one_line),
    AfterValidator(_filled),
    Field(json_schema_extra={"minLength": 1, "pattern": FILLED_LINE}),
]
LongText = Annotated[str, Field(max_length=2000), AfterValidator(_trim_text), AfterValidator(printable), _PRINTABLE]
OneLine = Annotated[str, AfterValidator(_trim_line), AfterValidator(printable), AfterValidator(_one_line), _ONE_LINE]

_PHONE_SEPARATORS = re.compile(r"[ .\-()]")
# `_phone` as one pattern: separators anywhere, then an E.164 or a French national number.
_SEP = r"[ .()-]*"
PHONE = rf"^{_SEP}(?:\+{_SEP}[1-9](?:{_SEP}[0-9]){{6,14}}|0{_SEP}[1-9](?:{_SEP}[0-9]){{8}}){_SEP}$"
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_FRENCH = re.compile(r"^0[1-9][0-9]{8}$")


def _phone(value: str) -> str:
    compact = _PHONE_SEPARATORS.sub("", value)
    if not (_E164.match(compact) or _FRENCH.match(compact)):
        raise ValueError("expected an E.164 number (+33 1 23 45 67 89) or a French national one (01 23 45 67 89)")
    return compact


# The listings' columns hold 500 characters. The document states the limit on what is sent; a URL
# that only grows past it once encoded (an IDN host in punycode, non-ASCII path percent-encoded) is
# refused here, since it is stored encoded.
URL_MAX_LENGTH = 500


def _https(value: HttpUrl) -> str:
    if value.scheme != "https":
        raise ValueError("only https URLs are accepted")
    encoded = str(value)
    if len(encoded) > URL_MAX_LENGTH:
        raise ValueError(f"the URL has more than {URL_MAX_LENGTH} characters once encoded")
    return encoded


def _specialism(value: str) -> str:
    if value not in SLUGS:
        raise ValueError("an unknown specialism: see /v1/specialisms")  # the value is never echoed
    return value


def unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("values must not repeat")
    return values


UNIQUE_ITEMS = Field(json_schema_extra={"uniqueItems": True})  # what `unique` refuses, declared


Phone = Annotated[str, Field(max_length=32, json_schema_extra={"pattern": PHONE}), AfterValidator(_phone)]
Email = Annotated[EmailStr, Field(max_length=254)]
HttpsUrl = Annotated[HttpUrl, UrlConstraints(max_length=URL_MAX_LENGTH), AfterValidator(_https)]
SpecialismSlug = Annotated[str, AfterValidator(_specialism), Field(json_schema_extra={"enum": sorted(SLUGS)})]
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]
CommuneCode = Annotated[str, Field(pattern=r"^[0-9][0-9AB][0-9]{3}$")]
DepartementCode = Annotated[str, Field(pattern=r"^(?:0[1-9]|1[0-9]|2[1-9AB]|[3-8][0-9]|9[0-5]|97[1-46])$")]
CollectiviteCode = Annotated[str, Field(pattern=r"^[0-9]{1,3}[A-Z]{1,2}$")]
RegionCode = Annotated[str, Field(pattern=r"^[0-9]{2}$")]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9-]{2,64}$")]


def _whole(value: Any) -> Any:
    """JSON has numbers, not ints and floats: 9.0 is the integer 9 (JSON Schema says so too), while
    "9", true or 9.5 stay refused by the strict int check that follows."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WHOLE = BeforeValidator(_whole)

# RFC 3339 text only, as the document's `date-time` and `date` formats say: pydantic alone would also
# take a number as a Unix time (0.5 → 1970) or a space for the T, which no client of the document sends.
_DATE_TIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _date_time(value: Any) -> Any:
    if not (isinstance(value, str) and _DATE_TIME.match(value)):
        raise ValueError("expected an RFC 3339 date-time with its offset, e.g. 2026-12-24T22:00:00+01:00")
    return value


def _date(value: Any) -> Any:
    if not (isinstance(value, str) and _DATE.match(value)):
        raise ValueError("expected a date as YYYY-MM-DD")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_date_time)]
Date = Annotated[date, BeforeValidator(_date)]
# Whole JSON numbers, never strings or booleans: Annotated[int, Strict(), Field(bounds), WHOLE]. The
# bounds come before WHOLE, so that the document states them as minimum and maximum.
Age = Annotated[int, Strict(), Field(ge=0, le=99), WHOLE]


class Input(BaseModel):
    """The one base of every request body, in every package: unknown fields are errors (mass
    assignment: organisation, status, author… are never writable by naming them), NaN and Infinity
    are refused, strings are capped. Free text is trimmed by its own types (`Text`, `Name`…), never
    codes or ids: a code sent with spaces around it does not match its stated pattern, and is refused
    as the document says."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=2000)


# --- opening hours ----------------------------------------------------------------------------

_TIME = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"
Time = Annotated[str, Field(pattern=_TIME)]
# A start is any time but 24:00 (refused by `_interval`, with its own message); the document says so.
StartTime = Annotated[str, Field(pattern=_TIME, json_schema_extra={"pattern": r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"})]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _interval(value: tuple[str, str]) -> tuple[str, str]:
    start, end = value
    if start == "24:00":
        raise ValueError("an interval cannot start at 24:00")
    if start == end:
        raise ValueError("an interval needs a start and an end that differ")
    return value


Interval = Annotated[tuple[StartTime, Time], AfterValidator(_interval)]


def _day_intervals(intervals: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Sorted, non-overlapping; only the last one may run past midnight (end before start)."""
    ordered = sorted(intervals)
    for (start, end), (next_start, _) in zip(ordered, ordered[1:], strict=False):
        if end <= start or end > next_start:
            raise ValueError("intervals of a day must not overlap (only the last may run past midnight)")
    return ordered


DayHours = Annotated[list[Interval], Field(max_length=6), AfterValidator(_day_intervals)]


class DatedHours(Input):
    date: Date
    hours: DayHours = Field(description="The day's hours; [] closes the day.")


class Schedule(Input):
    """Weekly hours in the location's local time, or always open, or on call, or unknown.

    Intervals are ["HH:MM", "HH:MM"]; an end at or before the start runs past midnight. Public holidays
    close the day unless closed_on_public_holidays is false; dated exceptions replace a day's hours."""

    mode: Literal["weekly", "always", "on_call", "unknown"]
    weekly: dict[Day, DayHours] | None = None
    closed_on_public_holidays: bool = True
    exceptions: list[DatedHours] = Field(default_factory=list, max_length=60)

    @model_validator(mode="after")
    def _consistent(self) -> Schedule:
        if self.mode == "weekly" and self.weekly is None:
            raise ValueError('weekly hours need a \'weekly\' object, e.g. {"mon": [["09:00", "17:00"]]}')
        if self.mode != "weekly" and (self.weekly or self.exceptions):
            raise ValueError(f"a '{self.mode}' schedule takes no weekly hours or exceptions")
        dates = [exception.date for exception in self.exceptions]
        if len(set(dates)) != len(dates):
            raise ValueError("exceptions must not repeat a date")
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# --- listings ---------------------------------------------------------------------------------


def _finite_position(value: list[float]) -> list[float]:
    if len(value) != 2:
        raise ValueError("a position is [longitude, latitude]")
    lon, lat = value
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ValueError("coordinates must be finite numbers")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError("longitude must be within ±180 and latitude within ±90 (GeoJSON order: [lon, lat])")
    return value


class PointGeometry(Input):
    """A GeoJSON Point (RFC 7946): [longitude, latitude] in WGS 84."""

    type: Literal["Point"]
    coordinates: Annotated[
        list[Annotated[float, Strict()]],
        AfterValidator(_finite_position),
        Field(
            description="[longitude, latitude]",
            json_schema_extra={
                "minItems": 2,
                "maxItems": 2,
                "prefixItems": [
                    {"type": "number", "minimum": -180, "maximum": 180},
                    {"type": "number", "minimum": -90, "maximum": 90},
                ],
            },
        ),
    ]

    @property
    def lon(self) -> float:
        return self.coordinates[0]

    @property
    def lat(self) -> float:
        return self.coordinates[1]


class LocationFields(Input):
    name: Name | None = None
    address: Annotated[OneLine, Field(max_length=300)] | None = None
    commune_code: CommuneCode | None = None
    point: PointGeometry | None = None
    visibility: Visibility | None = None
    front_door_phone: Phone | None = None
    front_door_email: Email | None = None


class LocationCreate(LocationFields):
    # "A point, or an address to place" (directory/locations.py refuses neither): stated in the document.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["point"], "properties": {"point": {"type": "object"}}},
                {"required": ["address"], "properties": {"address": {"type": "string", "pattern": "\\S"}}},
            ]
        }
    )

    organisation_id: uuid.UUID | None = Field(default=None, description="Admins only; partners write their own.")
    commune_code: CommuneCode
    point: PointGeometry | None = Field(
        default=None,
        description="Without a point, a public location's address is placed by the IGN Géoplateforme "
        "geocoder (a result inside the commune only), else at the commune's point; a confidential "
        "location's address is never sent out: give its point, or it stands at its commune's point.",
    )
    visibility: Visibility = Field(
        default=Visibility.public,
        description="confidential: a safe house, seen exactly only by its organisation; admins create public ones.",
    )


class LocationPatch(LocationFields):
    """JSON Merge Patch (RFC 7396): the fields given replace the stored ones; null clears one."""


class ServiceFields(Input):
    location_id: uuid.UUID | None = None
    name: Name | None = None
    description: LongText | None = None
    specialisms: (
        Annotated[list[SpecialismSlug], Field(min_length=1, max_length=10), AfterValidator(unique), UNIQUE_ITEMS] | None
    ) = None
    audiences: Annotated[list[Audience], Field(max_length=4), AfterValidator(unique), UNIQUE_ITEMS] | None = None
    age_min: Age | None = None
    age_max: Age | None = None
    genders: Annotated[list[Gender], Field(max_length=3), AfterValidator(unique), UNIQUE_ITEMS] | None = None
    languages: Annotated[list[Language], Field(max_length=30), AfterValidator(unique), UNIQUE_ITEMS] | None = None
    channels: Annotated[list[Channel], Field(max_length=4), AfterValidator(unique), UNIQUE_ITEMS] | None = None
    phone: Phone | None = None
    email: Email | None = None
    website: HttpsUrl | None = None
    schedule: Schedule | None = None


class ServiceCreate(ServiceFields):
    organisation_id: uuid.UUID | None = Field(default=None, description="Admins only; partners write their own.")
    name: Name
    specialisms: Annotated[
        list[SpecialismSlug], Field(min_length=1, max_length=10), AfterValidator(unique), UNIQUE_ITEMS
    ]

    @model_validator(mode="after")
    def _ages(self) -> ServiceCreate:
        if self.age_min is not None and self.age_max is not None and self.age_min > self.age_max:
            raise ValueError("age_min must not exceed age_max")
        return self


class ServicePatch(ServiceFields):
    """JSON Merge Patch (RFC 7396): the fields given replace the stored ones; null clears one."""


class AreaFields(Input):
    communes: Annotated[list[CommuneCode], Field(max_length=500), AfterValidator(unique), UNIQUE_ITEMS] | None = None
    departements: (
        Annotated[list[DepartementCode], Field(max_length=101), AfterValidator(unique), UNIQUE_ITEMS] | None
    ) = None
    collectivites: (
        Annotated[list[CollectiviteCode], Field(max_length=100), AfterValidator(unique), UNIQUE_ITEMS] | None
    ) = None
    regions: Annotated[list[RegionCode], Field(max_length=18), AfterValidator(unique), UNIQUE_ITEMS] | None = None
    radius_km: Annotated[float, Strict(), Field(gt=0, le=200)] | None = None
    national: bool | None = None


class AreaCreate(AreaFields):
    service_id: uuid.UUID


class AreaPatch(AreaFields):
    """JSON Merge Patch (RFC 7396)."""


class CapacityUpdate(Input):
    state: Capacity
    places: Annotated[int, Strict(), Field(ge=0, le=10_000), WHOLE] | None = None
    as_of: Timestamp | None = Field(default=None, description="When the figure was true; defaults to now.")


class ClosureCreate(Input):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    starts: Timestamp | None = Field(default=None, alias="from", description="Defaults to now.")
    until: Timestamp | None = Field(default=None, description="Reopening time; none: until reopened.")
    message: Annotated[Text, Field(max_length=500)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ClosureCreate:
        if self.starts and self.until and self.until <= self.starts:
            raise ValueError("'until' must come after 'from'")
        return self


# --- organisations (admins) --------------------------------------------------------------------


class OrganisationFields(Input):
    name: Name | None = None
    kind: OrganisationKind | None = None
    description: LongText | None = None
    website: HttpsUrl | None = None
    email: Email | None = None
    phone: Phone | None = None
    siren: Annotated[str, Field(pattern=r"^[0-9]{9}$")] | None = None
    siret: Annotated[str, Field(pattern=r"^[0-9]{14}$")] | None = None
    rna: Annotated[str, Field(pattern=r"^W[0-9A-Z][0-9]{8}$")] | None = None
    collectives: Annotated[list[Slug], Field(max_length=10), AfterValidator(unique), UNIQUE_ITEMS] | None = None
    collectivite_code: CollectiviteCode | None = None
    seat_commune_code: CommuneCode | None = None


class OrganisationCreate(OrganisationFields):
    name: Name
    kind: OrganisationKind


class OrganisationPatch(OrganisationFields):
    """JSON Merge Patch (RFC 7396)."""


class VerificationUpdate(Input):
    state: Literal["verified", "unverified"]
