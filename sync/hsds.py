"""Open Referral HSDS 3.0: Maillage's published directory in the international exchange format.

The rows come from directory/publication.py, confidentiality already applied in SQL (a safe house is
its commune and its front-door contact); this module only renames and reshapes them. The models
below are the subset of HSDS 3.0 that Maillage fills, field for field as the specification names
them (https://docs.openreferral.org/en/latest/hsds/schema_reference.html); tests validate every
answer and the dump against the official JSON schemas.

Choices worth knowing:
- Ids. HSDS wants a UUID for every object, sub-objects included. Services, organisations, locations
  and areas keep Maillage's own; the others (phones, schedules, attributes, taxonomy terms…) get a
  UUID v5 derived from what they describe, so an id never changes between two exports.
- Taxonomies. Four, each a term list: Maillage's specialisms (published at /v1/specialisms, with
  their version), the closest data·inclusion thématique of each (the French référentiel, for
  services whose specialism has one), the audiences and the channels. A service carries its terms
  as `attributes`, and its provenance (an imported listing's source and licence) as one more.
- Schedules are RFC 5545 rules (FREQ=WEEKLY, BYDAY) with opens_at/closes_at in the place's local
  time. HSDS's `timezone` is a fixed UTC offset, which daylight saving time makes wrong half the
  year: it is left out, and each schedule's notes name the time zone.
- Capacity is not exported: HSDS 3.0 has no field for it (3.1 adds `service_capacity`).
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from functools import cache
from importlib.metadata import version as package_version
from pathlib import Path
from typing import IO, Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo

from data_inclusion.schema.v1 import Thematique
from psycopg import AsyncConnection
from pydantic import BaseModel, ConfigDict

from directory import publication
from directory.models import Audience, Channel, OrganisationKind
from directory.taxonomy import SPECIALISMS
from directory.taxonomy import VERSION as SPECIALISMS_VERSION

HSDS_VERSION = "3.0"
# The namespace of the ids Maillage derives (uuid5): fixed forever, or every derived id changes.
NAMESPACE = uuid.UUID("8f0c4a52-6a0e-4d35-9a3c-1b19c0d3e7a1")


def derived_id(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(str(part) for part in parts)))


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- taxonomies ------------------------------------------------------------------------------------


class Taxonomy(Model):
    id: str
    name: str
    description: str
    uri: str | None = None
    version: str | None = None


class TaxonomyTerm(Model):
    id: str
    code: str
    name: str
    description: str
    taxonomy: str
    taxonomy_id: str
    taxonomy_detail: Taxonomy | None = None
    language: str = "fr"
    term_uri: str | None = None


TaxonomyKey = Literal["specialisms", "data_inclusion", "audiences", "channels", "sources"]

_AUDIENCES = {
    Audience.minor: "Mineur·es",
    Audience.young_adult: "Jeunes majeur·es",
    Audience.entourage: "Entourage (parents, proches)",
    Audience.professional: "Professionnel·les",
}
_CHANNELS = {
    Channel.in_person: "Accueil sur place",
    Channel.phone: "Par téléphone",
    Channel.online: "En ligne",
    Channel.outreach: "Aller-vers (rue, en ligne)",
}


@cache
def _data_inclusion_version() -> str:
    """The pinned data-inclusion-schema's version, read once (a metadata lookup costs ~2 ms)."""
    return package_version("data-inclusion-schema")


class Taxonomies:
    """The taxonomies and their terms, built once per answer from Maillage's own tables and the
    sources of imported listings; links point at the configured public base URL."""

    def __init__(self, base_url: str, sources: Sequence[dict[str, Any]]) -> None:
        self.base_url = base_url.rstrip("/")
        di_version = _data_inclusion_version()
        self.taxonomies: dict[TaxonomyKey, Taxonomy] = {
            "specialisms": Taxonomy(
                id=derived_id("taxonomy", "specialisms"),
                name="Maillage — spécialités",
                description="Ce que fait un service pour les mineur·es victimes d'exploitation sexuelle, et l'offre "
                "générale (hébergement, santé, droits) autour d'elles et d'eux. Identifiants stables.",
                uri=f"{self.base_url}/v1/specialisms",
                version=SPECIALISMS_VERSION,
            ),
            "data_inclusion": Taxonomy(
                id=derived_id("taxonomy", "data_inclusion"),
                name="data·inclusion — thématiques",
                description="Thématiques du référentiel de l'offre d'insertion data·inclusion (Licence Ouverte "
                "2.0) : la plus proche de chaque spécialité qui en a une.",
                uri="https://data.inclusion.gouv.fr/",
                version=di_version,
            ),
            "audiences": Taxonomy(
                id=derived_id("taxonomy", "audiences"),
                name="Maillage — publics",
                description="À qui un service s'adresse.",
            ),
            "channels": Taxonomy(
                id=derived_id("taxonomy", "channels"),
                name="Maillage — modes d'accès",
                description="Comment on joint le service ou comment il vient à la personne.",
            ),
            "sources": Taxonomy(
                id=derived_id("taxonomy", "sources"),
                name="Maillage — provenance",
                description="La source ouverte d'une fiche importée, avec sa licence ; la valeur de l'attribut est "
                "la date de mise à jour de la fiche à la source.",
            ),
        }
        self.terms: dict[tuple[TaxonomyKey, str], TaxonomyTerm] = {}
        for specialism in SPECIALISMS:
            self._term(
                "specialisms", specialism.slug, specialism.label_fr, f"Spécialité : {specialism.label_fr}.", uri=True
            )
        for thematique in sorted({s.data_inclusion for s in SPECIALISMS if s.data_inclusion}):
            label = Thematique(thematique).label
            self._term("data_inclusion", thematique, label, label)
        for audience, label in _AUDIENCES.items():
            self._term("audiences", audience.value, label, label)
        for channel, label in _CHANNELS.items():
            self._term("channels", channel.value, label, label)
        for source in sources:
            self._term(
                "sources", source["slug"], source["name"], f"{source['name']} — {source['licence']}", uri=source["url"]
            )

    def _term(self, key: TaxonomyKey, code: str, name: str, description: str, uri: bool | str = False) -> None:
        taxonomy = self.taxonomies[key]
        term_uri = uri if isinstance(uri, str) else f"{taxonomy.uri}#{code}" if uri else None
        self.terms[(key, code)] = TaxonomyTerm(
            id=derived_id("taxonomy_term", key, code),
            code=code,
            name=name,
            description=description,
            taxonomy=taxonomy.name,
            taxonomy_id=taxonomy.id,
            term_uri=term_uri,
        )

    def term_by_id(self, term_id: str) -> tuple[TaxonomyKey, str] | None:
        return next((key for key, term in self.terms.items() if term.id == term_id), None)

    def key_by_id(self, taxonomy_id: str) -> TaxonomyKey | None:
        return next((key for key, taxonomy in self.taxonomies.items() if taxonomy.id == taxonomy_id), None)

    def detailed(self, key: TaxonomyKey, code: str) -> TaxonomyTerm:
        term = self.terms[(key, code)]
        return term.model_copy(update={"taxonomy_detail": self.taxonomies[key]})


# --- the objects -----------------------------------------------------------------------------------


class Attribute(Model):
    id: str
    link_id: str
    link_type: str
    link_entity: str
    taxonomy_term_id: str
    taxonomy_term: TaxonomyTerm
    value: str | None = None


class Phone(Model):
    id: str
    number: str
    type: str = "voice"
    description: str | None = None


class Language(Model):
    id: str
    service_id: str
    code: str


class Schedule(Model):
    id: str
    service_id: str
    freq: Literal["WEEKLY"] | None = None
    byday: str | None = None
    wkst: Literal["MO"] | None = None
    opens_at: str | None = None
    closes_at: str | None = None
    timezone: float | None = None
    valid_from: str | None = None
    valid_to: str | None = None
    description: str | None = None
    notes: str | None = None


class ServiceArea(Model):
    id: str
    service_id: str
    name: str
    description: str | None = None


class Address(Model):
    id: str
    location_id: str
    address_1: str
    city: str
    region: str | None = None
    state_province: str
    postal_code: str
    country: str = "FR"
    address_type: Literal["physical"] = "physical"


class Contact(Model):
    id: str
    location_id: str
    name: str
    email: str


class Location(Model):
    id: str
    location_type: Literal["physical"] = "physical"
    organization_id: str
    name: str
    description: str | None = None
    latitude: float
    longitude: float
    external_identifier: str | None = None
    external_identifier_type: str | None = None
    addresses: list[Address] = []
    phones: list[Phone] = []
    contacts: list[Contact] = []


class ServiceBrief(Model):
    """A service named inside a service_at_location (the list form of the reference API)."""

    id: str
    organization_id: str
    name: str
    status: Literal["active", "temporarily closed"]


class ServiceAtLocation(Model):
    id: str
    service_id: str
    location_id: str
    location: Location
    service: ServiceBrief | None = None


class OrganizationIdentifier(Model):
    id: str
    organization_id: str
    identifier_type: str
    identifier: str


class Organization(Model):
    id: str
    name: str
    description: str
    email: str | None = None
    website: str | None = None
    phones: list[Phone] = []
    organization_identifiers: list[OrganizationIdentifier] = []
    locations: list[Location] | None = None


class Service(Model):
    id: str
    organization_id: str
    name: str
    description: str | None = None
    url: str | None = None
    email: str | None = None
    status: Literal["active", "temporarily closed"]
    alert: str | None = None
    eligibility_description: str | None = None
    minimum_age: int | None = None
    maximum_age: int | None = None
    assured_date: str | None = None
    phones: list[Phone] = []
    schedules: list[Schedule] = []
    service_areas: list[ServiceArea] = []
    service_at_locations: list[ServiceAtLocation] = []
    languages: list[Language] = []
    organization: Organization
    attributes: list[Attribute] = []


T = TypeVar("T", bound=Model)


class Page(Model, Generic[T]):
    """A page of the reference API: numbered from 1, `total_pages` of `per_page` items."""

    total_items: int
    total_pages: int
    page_number: int
    size: int
    first_page: bool
    last_page: bool
    empty: bool
    contents: list[T]


class About(Model):
    version: str
    openapi_url: str


def page_of(contents: list[T], *, total: int, page: int, per_page: int) -> Page[T]:
    pages = math.ceil(total / per_page)
    return Page(
        total_items=total,
        total_pages=pages,
        page_number=page,
        size=len(contents),
        first_page=page == 1,
        last_page=page >= pages,
        empty=total == 0,
        contents=contents,
    )


# --- mapping ---------------------------------------------------------------------------------------

_KIND = {
    OrganisationKind.crip: "Cellule de recueil des informations préoccupantes (CRIP) d'une collectivité",
    OrganisationKind.association: "Association",
    OrganisationKind.public_service: "Service public",
    OrganisationKind.health: "Établissement ou service de santé",
    OrganisationKind.justice: "Service de la justice",
    OrganisationKind.police: "Service de police ou de gendarmerie",
    OrganisationKind.other: "Autre organisme",
}
_DAYS = {"mon": "MO", "tue": "TU", "wed": "WE", "thu": "TH", "fri": "FR", "sat": "SA", "sun": "SU"}
_GENDERS = {"female": "filles et femmes", "male": "garçons et hommes", "other": "autres identités de genre"}
_POSTAL_CODE = re.compile(r"\b(\d{5})\b")


def organization(row: dict[str, Any], *, with_places: bool = False) -> Organization:
    org_id = str(row["id"])
    identifiers = [
        OrganizationIdentifier(
            id=derived_id("organization_identifier", org_id, kind),
            organization_id=org_id,
            identifier_type=label,
            identifier=row[kind],
        )
        for kind, label in (
            ("siren", "SIREN"),
            ("siret", "SIRET"),
            ("rna", "RNA (répertoire national des associations)"),
        )
        if row.get(kind)
    ]
    phones = [Phone(id=derived_id("phone", "organization", org_id), number=row["phone"])] if row.get("phone") else []
    return Organization(
        id=org_id,
        name=row["name"],
        description=row.get("description") or _KIND[OrganisationKind(row["kind"])],
        email=row.get("email"),
        website=row.get("website"),
        phones=phones,
        organization_identifiers=identifiers,
        locations=[location(place) for place in row.get("places", [])] if with_places else None,
    )


def place_id(place: dict[str, Any]) -> str:
    """A public place's own id; a confidential one's derived from what is published of it."""
    if place.get("id") is not None:
        return str(place["id"])
    front = place.get("front_door") or {}
    return derived_id(
        "confidential-place", place["organisation_id"], place["commune"]["code"], front.get("phone"), front.get("email")
    )


def location(place: dict[str, Any]) -> Location:
    """A place as published. A confidential one is its commune: named after it, at its point, with
    its front-door contact and no address — and named by those (no id of its own is read)."""
    commune = place["commune"]
    front = place.get("front_door") or {}
    location_id = place_id(place)
    city = f"{commune['name']} ({commune['code']})"
    if place["confidential"]:
        phones = (
            [
                Phone(
                    id=derived_id("phone", "location", location_id),
                    number=front["phone"],
                    description="Accueil : l'adresse de ce lieu est confidentielle.",
                )
            ]
            if front.get("phone")
            else []
        )
        contacts = (
            [
                Contact(
                    id=derived_id("contact", "location", location_id),
                    location_id=location_id,
                    name="Accueil",
                    email=front["email"],
                )
            ]
            if front.get("email")
            else []
        )
        return Location(
            id=location_id,
            organization_id=str(place["organisation_id"]),
            name=f"Lieu d'accueil confidentiel — {city}",
            description="Adresse confidentielle : le lieu est situé dans cette commune, la position donnée est celle "
            "de la commune. Le contact passe par l'accueil.",
            latitude=float(place["lat"]),
            longitude=float(place["lon"]),
            external_identifier=commune["code"],
            external_identifier_type="Code officiel géographique (INSEE) de la commune",
            phones=phones,
            contacts=contacts,
        )
    addresses = []
    if place.get("address"):
        found = _POSTAL_CODE.search(place["address"])
        codes = commune.get("postal_codes") or []
        postal_code = found.group(1) if found else codes[0] if len(codes) == 1 else ""
        addresses.append(
            Address(
                id=derived_id("address", location_id),
                location_id=location_id,
                address_1=place["address"],
                city=commune["name"],
                region=commune.get("region"),
                state_province=commune.get("departement") or "",
                postal_code=postal_code,
            )
        )
    approximate = place["precision"] == "commune"
    return Location(
        id=location_id,
        organization_id=str(place["organisation_id"]),
        name=place.get("name") or city,
        description="Position approximative : celle de la commune." if approximate else None,
        latitude=float(place["lat"]),
        longitude=float(place["lon"]),
        external_identifier=commune["code"],
        external_identifier_type="Code officiel géographique (INSEE) de la commune",
        addresses=addresses,
    )


def _attributes(row: dict[str, Any], taxonomies: Taxonomies) -> list[Attribute]:
    service_id = str(row["id"])
    wanted: list[tuple[TaxonomyKey, str, str, str | None]] = [
        *(("specialisms", slug, "specialism", None) for slug in row["specialisms"]),
        *(("data_inclusion", code, "closest_thematique", None) for code in _thematiques(row["specialisms"])),
        *(("audiences", code, "audience", None) for code in row["audiences"]),
        *(("channels", code, "channel", None) for code in row["channels"]),
    ]
    if row.get("source"):
        wanted.append(("sources", row["source"]["slug"], "source", row["source"].get("updated_on")))
    return [
        Attribute(
            id=derived_id("attribute", service_id, key, code),
            link_id=service_id,
            link_type=link_type,
            link_entity="service",
            taxonomy_term_id=taxonomies.terms[(key, code)].id,
            taxonomy_term=taxonomies.terms[(key, code)],
            value=value,
        )
        for key, code, link_type, value in wanted
        if (key, code) in taxonomies.terms
    ]


def specialisms_of(thematiques: Iterable[str]) -> tuple[str, ...]:
    """The specialisms whose closest data·inclusion thématique is one of these."""
    wanted = set(thematiques)
    return tuple(s.slug for s in SPECIALISMS if s.data_inclusion in wanted)


def _thematiques(specialisms: list[str]) -> list[str]:
    """The closest data·inclusion thématiques of these specialisms (directory/taxonomy.py's mapping)."""
    return sorted({s.data_inclusion for s in SPECIALISMS if s.slug in specialisms and s.data_inclusion})


def _eligibility(row: dict[str, Any]) -> str | None:
    parts = []
    if row["audiences"]:
        parts.append("Publics : " + ", ".join(_AUDIENCES[Audience(a)].lower() for a in row["audiences"]) + ".")
    age_min, age_max = row.get("age_min"), row.get("age_max")
    if age_min is not None and age_max is not None:
        parts.append(f"Âge : de {age_min} à {age_max} ans.")
    elif age_min is not None:
        parts.append(f"Âge : {age_min} ans et plus.")
    elif age_max is not None:
        parts.append(f"Âge : jusqu'à {age_max} ans.")
    if row["genders"]:
        parts.append("Accueille : " + ", ".join(_GENDERS.get(g, g) for g in row["genders"]) + ".")
    return " ".join(parts) or None


def periods(timezone: str, today: date) -> list[tuple[date | None, date | None, timedelta]]:
    """(first day, last day, UTC offset) of each stretch of days with one offset, from the stretch
    holding `today` to the one holding a year later; one open-ended stretch where the offset never
    changes (overseas). A day's offset is its noon's."""
    zone = ZoneInfo(timezone)

    def offset(day: date) -> timedelta:
        value = datetime.combine(day, time(12), zone).utcoffset()
        assert value is not None
        return value

    if len({offset(today + timedelta(days=n)) for n in range(0, 366, 7)}) == 1:
        return [(None, None, offset(today))]
    first = today
    while offset(first - timedelta(days=1)) == offset(today):
        first -= timedelta(days=1)
    stretches: list[tuple[date | None, date | None, timedelta]] = []
    day = first
    while day <= today + timedelta(days=365):
        last = day
        while offset(last + timedelta(days=1)) == offset(day):
            last += timedelta(days=1)
        stretches.append((day, last, offset(day)))
        day = last + timedelta(days=1)
    return stretches


def _suffix(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def schedules(service_id: str, schedule: dict[str, Any], timezone: str, today: date) -> list[Schedule]:
    """Maillage's hours as RFC 5545 weekly rules, one per opening interval (the days that share it in
    BYDAY), with the UTC offset HSDS asks for on opens_at/closes_at. Where daylight saving time moves
    the offset (mainland France), each rule is given for each stretch of one offset over the coming
    year (valid_from/valid_to); overseas, once. Dated exceptions to come are one-day schedules
    (HSDS 3.0 cannot say that they replace the weekly rule: their description says so)."""
    mode = schedule.get("mode")
    everyday = ",".join(_DAYS.values())
    intervals: list[tuple[str, str, str, str | None]] = []  # (byday, start, end, description)
    if mode == "always":
        intervals.append((everyday, "00:00", "23:59", "Ouvert 24 h/24, 7 j/7."))
    elif mode == "on_call":
        intervals.append((everyday, "00:00", "23:59", "Astreinte : joignable à toute heure, sans accueil sur place."))
    elif mode == "weekly":
        days_by_interval: dict[tuple[str, str], list[str]] = {}
        for day, code in _DAYS.items():
            for start, end in schedule.get("weekly", {}).get(day, []):
                days_by_interval.setdefault((start, end), []).append(code)
        for (start, end), days in sorted(days_by_interval.items()):
            overnight = "Se termine le lendemain." if end <= start else None
            intervals.append((",".join(days), start, "23:59" if end == "24:00" else end, overnight))
    else:
        return []
    holidays = (
        "Fermé les jours fériés."
        if mode == "weekly" and schedule.get("closed_on_public_holidays", True)
        else "Ouvert les jours fériés."
    )
    out = []
    for first, last, offset in periods(timezone, today):
        suffix = _suffix(offset)
        for byday, start, end, description in intervals:
            out.append(
                Schedule(
                    id=derived_id("schedule", service_id, byday, start, end, first, suffix),
                    service_id=service_id,
                    freq="WEEKLY",
                    wkst="MO",
                    byday=byday,
                    opens_at=start + suffix,
                    closes_at=end + suffix,
                    timezone=offset.total_seconds() / 3600,
                    valid_from=first.isoformat() if first else None,
                    valid_to=last.isoformat() if last else None,
                    description=description,
                    notes=f"Heure locale ({timezone}). {holidays}",
                )
            )
    for exception in schedule.get("exceptions", []):
        on = date.fromisoformat(exception["date"])
        if on < today:
            continue
        offset = datetime.combine(on, time(12), ZoneInfo(timezone)).utcoffset() or timedelta()
        weekday = list(_DAYS.values())[on.weekday()]
        common = {
            "service_id": service_id,
            "valid_from": on.isoformat(),
            "valid_to": on.isoformat(),
            "timezone": offset.total_seconds() / 3600,
            "notes": f"Heure locale ({timezone}). Remplace les horaires habituels de ce jour-là.",
        }
        if not exception["hours"]:
            out.append(
                Schedule(id=derived_id("schedule", service_id, on), description="Fermé exceptionnellement.", **common)
            )
        for start, end in exception["hours"]:
            out.append(
                Schedule(
                    id=derived_id("schedule", service_id, on, start, end),
                    freq="WEEKLY",
                    wkst="MO",
                    byday=weekday,
                    opens_at=start + _suffix(offset),
                    closes_at=("23:59" if end == "24:00" else end) + _suffix(offset),
                    description="Horaires exceptionnels.",
                    **common,
                )
            )
    return out


def _area_name(area: dict[str, Any]) -> str:
    if area["national"]:
        return "France entière"
    parts = []
    for key, label in (
        ("regions", "Régions"),
        ("collectivites", "Collectivités"),
        ("departements", "Départements"),
        ("communes", "Communes"),
    ):
        if area[key]:
            parts.append(f"{label} {', '.join(area[key])}")
    if area.get("radius_km") is not None:
        # The radius's centre is the service's place: never given, it may be a safe house.
        parts.append(f"{area['radius_km']:g} km autour du lieu d'accueil")
    return " ; ".join(parts)


def _status(row: dict[str, Any]) -> Literal["active", "temporarily closed"]:
    """Closed now, as search reads a closure (its window, not only its status)."""
    return "temporarily closed" if row["closed_now"] else "active"


def _alert(row: dict[str, Any]) -> str | None:
    """A closure under way or to come, in the place's local time."""
    closure = row.get("closure")
    if closure is None:
        return None
    until = f" jusqu'au {closure['until']}" if closure.get("until") else ""
    if row["closed_now"]:
        text = f"Fermé temporairement{until} (heure locale)."
    else:
        text = f"Fermeture temporaire à partir du {closure['from']}{until} (heure locale)."
    return text + (f" {closure['message']}" if closure.get("message") else "")


def _at_location(row: dict[str, Any]) -> ServiceAtLocation | None:
    place = row.get("place")
    if place is None:
        return None
    service_id = str(row["id"])
    # A service has one place in Maillage: its service_at_location is named by the service's id.
    return ServiceAtLocation(
        id=service_id,
        service_id=service_id,
        location_id=place_id(place),
        location=location(place),
    )


def service(row: dict[str, Any], taxonomies: Taxonomies) -> Service:
    service_id = str(row["id"])
    at_location = _at_location(row)
    return Service(
        id=service_id,
        organization_id=str(row["organisation"]["id"]),
        name=row["name"],
        description=row.get("description"),
        url=row.get("website"),
        email=row.get("email"),
        status=_status(row),
        alert=_alert(row),
        eligibility_description=_eligibility(row),
        minimum_age=row.get("age_min"),
        maximum_age=row.get("age_max"),
        assured_date=row.get("verified_on"),
        phones=[Phone(id=derived_id("phone", "service", service_id), number=row["phone"])] if row.get("phone") else [],
        schedules=schedules(service_id, row["schedule"], row["timezone"], date.fromisoformat(row["today"])),
        service_areas=[
            ServiceArea(id=str(area["id"]), service_id=service_id, name=_area_name(area)) for area in row["areas"]
        ],
        service_at_locations=[at_location] if at_location else [],
        languages=[
            Language(id=derived_id("language", service_id, code), service_id=service_id, code=code)
            for code in row["languages"]
        ],
        organization=organization(row["organisation"]),
        attributes=_attributes(row, taxonomies),
    )


def service_at_location(row: dict[str, Any]) -> ServiceAtLocation:
    """The place of a service that has one (rows read with `placed`), with the service named."""
    at_location = _at_location(row)
    assert at_location is not None
    brief = ServiceBrief(
        id=str(row["id"]), organization_id=str(row["organisation"]["id"]), name=row["name"], status=_status(row)
    )
    return at_location.model_copy(update={"service": brief})


def dump(models: Iterable[Model]) -> list[dict[str, Any]]:
    return [model.model_dump(mode="json", exclude_none=True) for model in models]


# --- the dump --------------------------------------------------------------------------------------

EXPORT_BATCH = 500
EXPORT_FILES = ("services", "service_at_locations", "organizations", "taxonomies", "taxonomy_terms")


async def export(conn: AsyncConnection, directory: Path, *, base_url: str) -> dict[str, int]:
    """Write the whole published directory to `directory` as HSDS 3.0 objects, one JSON object per
    line (the reference API's `ndjson` format): services.ndjson (fully nested), service_at_locations,
    organizations (with their places), taxonomies, taxonomy_terms, and hsds.json (version, time, counts,
    the sources and their licences). Each file appears whole or not at all (written aside, then
    renamed together at the end, so a failure leaves the previous dump as it was). Run it in one
    REPEATABLE READ transaction so that the files agree with each other; `exported_at` is that
    snapshot's time. Returns the count of each file's objects."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = await publication.sources(conn)
    as_of = await publication.snapshot_time(conn)
    taxonomies = Taxonomies(base_url, sources)
    with _Files(directory) as files:
        after: uuid.UUID | None = None
        while rows := await publication.services(conn, publication.ServiceFilter(), after=after, limit=EXPORT_BATCH):
            for row in rows:
                files.write("services", service(row, taxonomies))
                if row.get("place") is not None:
                    files.write("service_at_locations", service_at_location(row))
            after = uuid.UUID(str(rows[-1]["id"]))
        after = None
        while rows := await publication.organisations(conn, places=True, after=after, limit=EXPORT_BATCH):
            for row in rows:
                files.write("organizations", organization(row, with_places=True))
            after = uuid.UUID(str(rows[-1]["id"]))
        for taxonomy in taxonomies.taxonomies.values():
            files.write("taxonomies", taxonomy)
        for key in taxonomies.terms:
            files.write("taxonomy_terms", taxonomies.detailed(*key))
        counts = dict(files.counts)
        about = {
            "version": HSDS_VERSION,
            "exported_at": as_of,
            "files": {f"{name}.ndjson": count for name, count in counts.items()},
            "sources": sources,
            "confidentiality": "A confidential place (a safe house) is published as its commune: the commune's "
            "name, code and point, and its front-door contact; never its name, address, exact point or own id.",
        }
        files.write_json("hsds", about)
    return counts


class _Files:
    """The dump's files, written aside (`.<name>.<pid>.partial`, so that two dumps into one folder do
    not mix) and renamed into place only when all are complete."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.counts: dict[str, int] = dict.fromkeys(EXPORT_FILES, 0)
        self.handles: dict[str, IO[str]] = {}
        self.finished: list[tuple[Path, Path]] = []

    def __enter__(self) -> _Files:
        for name in EXPORT_FILES:
            self.handles[name] = self._open(f"{name}.ndjson")
        return self

    def _open(self, name: str) -> IO[str]:
        final = self.directory / name
        partial = final.with_name(f".{name}.{os.getpid()}.partial")
        self.finished.append((partial, final))
        return partial.open("w", encoding="utf-8")

    def write(self, name: str, model: Model) -> None:
        self.handles[name].write(model.model_dump_json(exclude_none=True) + "\n")
        self.counts[name] += 1

    def write_json(self, name: str, value: dict[str, Any]) -> None:
        with self._open(f"{name}.json") as handle:
            json.dump(value, handle, ensure_ascii=False, indent=2)
            handle.write("\n")

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        for handle in self.handles.values():
            handle.close()
        for partial, final in self.finished:
            if error is None:
                partial.replace(final)
            else:
                partial.unlink(missing_ok=True)
