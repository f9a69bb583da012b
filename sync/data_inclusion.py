"""data·inclusion in: read its published extract or its API, validate every row with the schema's own
models (`data-inclusion-schema`), and map it to Maillage's terms for directory/imports.py.

The référentiel (Licence Ouverte 2.0) is mostly the generic offer of social inclusion: housing,
health, rights, employment. Maillage keeps what a specialist needs around a child and maps it
conservatively, to the `general-*` specialisms only (directory/taxonomy.py): a service none of whose
thématiques is mapped is left out; values that have no faithful Maillage equivalent are reported,
never guessed. The README's "Open data in" section has the mapping table.

Sources: a directory holding the published `structures.json` and `services.json` (JSON arrays, read
as a stream so memory stays bounded), or the base URL of the API (`…/api/v1`), read page by page with
the token from settings. HTTP goes through the injected httpx client.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import ijson
import psycopg
from data_inclusion.schema.v1 import ModeAccueil, Public, Service, Structure
from pydantic import TypeAdapter, ValidationError

from directory import imports
from directory.imports import ImportReport, Rejection, ServiceRow, StructureRow
from directory.osm_hours import convert
from directory.schemas import HttpsUrl, Phone
from directory.taxonomy import DATA_INCLUSION_IMPORT
from geo.codes import commune_of

SOURCE = "data-inclusion"
SCHEMA_VERSION = "1.0.10"  # data-inclusion-schema, pinned: the mapping below was reviewed against it
PAGE_SIZE = 1000
DESCRIPTION_MAX = 2000
NAME_MAX = 200

# publics → audiences. "jeunes" covers adolescents and young adults alike: only the young adults are
# certain, so minors are never inferred; "tous-publics" says nothing Maillage can filter on.
AUDIENCES: dict[str, str] = {Public.FAMILLES.value: "entourage", Public.JEUNES.value: "young_adult"}
# A service for women (with, at most, publics that do not say it takes men) is one a boy must not be
# sent to: never shown to a search for a boy.
WOMEN_COMPATIBLE = {
    Public.FEMMES.value,
    Public.PERSONNES_EN_SITUATION_D_URGENCE.value,
    Public.PERSONNES_EXILEES.value,
    Public.PERSONNES_EN_SITUATION_JURIDIQUE_SPECIFIQUE.value,
}
# Publics that are adults by definition: a service for them only is not for a child (age 18 and over).
ADULTS = {
    Public.SENIORS.value,
    Public.ACTIFS.value,
    Public.DEMANDEURS_EMPLOI.value,
    Public.BENEFICIAIRES_DES_MINIMAS_SOCIAUX.value,
}

_phone = TypeAdapter(Phone)
_https = TypeAdapter(HttpsUrl)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Extract:
    """Where the rows come from, and how far along reading is (bytes or rows), for a progress bar."""

    structures: Iterator[dict[str, Any]]
    services: Iterator[dict[str, Any]]
    total: int | None
    progress: Callable[[], int]


def _stream(handle: BinaryIO) -> Iterator[dict[str, Any]]:
    start = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not start.startswith(b"["):
        raise ValueError(f"{getattr(handle, 'name', 'the file')}: expected a JSON array of objects")
    handle.seek(0)
    for item in ijson.items(handle, "item", use_float=True):
        if not isinstance(item, dict):
            raise ValueError("expected a JSON array of objects")
        yield item


def open_directory(directory: Path) -> Extract:
    """The published extract: `structures.json` and `services.json` in `directory`."""
    paths = [directory / "structures.json", directory / "services.json"]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{directory}: missing {', '.join(missing)} (the data·inclusion JSON extract)")
    handles = [p.open("rb") for p in paths]
    sizes = [p.stat().st_size for p in paths]

    def progress() -> int:
        done = 0
        for handle, size in zip(handles, sizes, strict=True):
            done += size if handle.closed else handle.tell()
        return done

    def items(handle: BinaryIO) -> Iterator[dict[str, Any]]:
        with handle:
            yield from _stream(handle)

    return Extract(items(handles[0]), items(handles[1]), sum(sizes), progress)


def open_api(base_url: str, client: httpx.Client, token: str | None) -> Extract:
    """Pages of the API: `{base}/structures` and `{base}/services` (`page`, `size`; `items`, `pages`)."""
    if not base_url.startswith("https://"):
        raise ValueError("data·inclusion's API is read over https only (the token travels with each page)")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    read = 0
    total: list[int] = [0, 0]

    def pages(kind: str, index: int) -> Iterator[dict[str, Any]]:
        nonlocal read
        page, seen = 1, 0
        while True:
            response = client.get(
                f"{base_url.rstrip('/')}/{kind}", params={"page": page, "size": PAGE_SIZE}, headers=headers
            )
            if response.status_code != 200:
                raise RuntimeError(f"data·inclusion answered {response.status_code} for {kind} page {page}")
            body = response.json()
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise RuntimeError(f"data·inclusion's {kind} page {page} has no list of items")
            total[index] = int(body.get("total") or 0)
            for item in items:
                read += 1
                seen += 1
                yield item
            if page >= int(body.get("pages") or 0) or not items:
                if seen != total[index]:  # a short read would archive what it missed
                    raise RuntimeError(f"data·inclusion announced {total[index]} {kind} and gave {seen}")
                return
            page += 1

    return Extract(pages("structures", 0), pages("services", 1), None, lambda: read)


def _reason(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "row"
    return f"{where}: {first['msg']}"


def _source_id(raw: dict[str, Any]) -> str:
    value = raw.get("id")
    return value if isinstance(value, str) and value else "(no id)"


def _text(value: str | None, limit: int, field: str, report: ImportReport) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > limit:
        report.left_out[f"{field} shortened to {limit} characters"] += 1
        return value[: limit - 1].rstrip() + "…"
    return value


def _contact(kind: str, value: Any, field: str, report: ImportReport) -> str | None:
    """A phone or https site as Maillage accepts them from its partners; anything else is left out."""
    if value is None or value == "":
        return None
    try:
        return str((_phone if kind == "phone" else _https).validate_python(str(value)))
    except ValidationError:
        report.left_out[f"{field}: not {'a phone number' if kind == 'phone' else 'an https URL'}"] += 1
        return None


def _name(value: str) -> str:
    return _SPACES.sub(" ", value).strip()[:NAME_MAX]


def map_structure(raw: dict[str, Any], report: ImportReport) -> StructureRow | Rejection:
    try:
        row = Structure.model_validate(raw)
    except ValidationError as error:
        siret = raw.get("siret")
        return Rejection(
            _source_id(raw),
            "invalid structure",
            _reason(error),
            siret if isinstance(siret, str) and re.fullmatch(r"\d{14}", siret) else None,
        )
    return StructureRow(
        source_id=row.id,
        siret=row.siret,
        name=_name(row.nom),
        description=_text(row.description, DESCRIPTION_MAX, "structure description", report),
        website=_contact("url", row.site_web, "structure site_web", report),
        email=str(row.courriel) if row.courriel else None,
        phone=_contact("phone", row.telephone, "structure telephone", report),
        updated_on=row.date_maj,
    )


def _zone(codes: list[str] | None) -> tuple[list[str], list[str], list[str], bool, list[str]]:
    """zone_eligibilite → (communes, départements, EPCIs, national, codes outside France)."""
    communes: list[str] = []
    departements: list[str] = []
    epcis: list[str] = []
    national = False
    abroad: list[str] = []
    for code in codes or []:
        if code in ("france", "99100"):
            national = True
        elif code.startswith("99") and len(code) == 5:
            abroad.append(code)
        elif len(code) == 9:
            epcis.append(code)
        elif len(code) == 5:
            communes.append(commune_of(code))
        else:
            departements.append(code)
    return communes, departements, epcis, national, abroad


def map_service(raw: dict[str, Any], report: ImportReport) -> ServiceRow | Rejection | None:
    """A service in Maillage's terms, a rejection, or None when it is outside Maillage's scope."""
    try:
        row = Service.model_validate(raw)
    except ValidationError as error:
        return Rejection(_source_id(raw), "invalid service", _reason(error))
    thematiques = sorted(t.value for t in row.thematiques or ())
    specialisms = sorted({DATA_INCLUSION_IMPORT[t] for t in thematiques if t in DATA_INCLUSION_IMPORT})
    if not specialisms:
        report.skipped["no thématique within Maillage's scope"] += 1
        return None
    for thematique in thematiques:
        if thematique not in DATA_INCLUSION_IMPORT:
            report.left_out[f"thematiques: {thematique}"] += 1
    publics = {p.value for p in row.publics or ()}
    audiences = sorted({AUDIENCES[p] for p in publics if p in AUDIENCES})
    for public in sorted(publics - AUDIENCES.keys() - {Public.TOUS_PUBLICS.value}):
        report.left_out[f"publics: {public} (no Maillage audience)"] += 1
    women = Public.FEMMES.value in publics and publics <= WOMEN_COMPATIBLE
    genders = ["female"] if women else []
    adults_only = bool(publics) and publics <= ADULTS

    phone = _contact("phone", row.telephone, "service telephone", report)
    mobilisation = _contact("url", row.lien_mobilisation, "service lien_mobilisation", report)
    website = mobilisation or _contact("url", row.lien_source, "service lien_source", report)
    modes = set(row.modes_accueil or ())
    channels = set()
    if ModeAccueil.EN_PRESENTIEL in modes:
        channels.add("in_person")
    if ModeAccueil.A_DISTANCE in modes:
        # "À distance, par téléphone ou internet": only what the listing gives a way to reach.
        if phone:
            channels.add("phone")
        if mobilisation or row.courriel:  # a way to reach the service, not its page in a catalogue
            channels.add("online")
        if not (phone or mobilisation or row.courriel):
            report.left_out["modes_accueil: a-distance without a phone, link or email"] += 1

    communes, departements, epcis, national, abroad = _zone(row.zone_eligibilite)
    if abroad:
        report.left_out["zone_eligibilite: a country other than France"] += 1
    commune = commune_of(row.code_insee) if row.code_insee else None
    in_person = ModeAccueil.EN_PRESENTIEL in modes or not modes
    place = commune if in_person else None
    if place is None and not (communes or departements or epcis or national):
        return Rejection(row.id, "no place", "neither a commune where people are received nor a zone_eligibilite")
    coordinates = (row.longitude, row.latitude)
    has_point = place is not None and all(c is not None for c in coordinates)

    schedule: dict[str, Any] = {"mode": "unknown"}
    if row.horaires_accueil:
        conversion = convert(row.horaires_accueil)
        schedule = conversion.schedule
        if conversion.problem:
            report.left_out[f"horaires_accueil: {conversion.problem}"] += 1

    # Who may come and on what terms, in the source's words: a specialist reads them with the rest.
    details = [row.description.strip()]
    if row.publics_precisions and row.publics_precisions.strip():
        details.append(f"Publics : {row.publics_precisions.strip()}")
    if row.conditions_acces and row.conditions_acces.strip():
        details.append(f"Conditions d'accès : {row.conditions_acces.strip()}")
    return ServiceRow(
        source_id=row.id,
        structure_id=row.structure_id,
        name=_name(row.nom),
        description=_text("\n\n".join(details), DESCRIPTION_MAX, "service description", report),
        age_min=18 if adults_only else None,
        specialisms=specialisms,
        audiences=audiences,
        genders=genders,
        channels=sorted(channels),
        phone=phone,
        email=str(row.courriel) if row.courriel else None,
        website=website,
        schedule=schedule,
        updated_on=row.date_maj,
        commune_code=place,
        address=_text(" ".join(p for p in (row.adresse, row.complement_adresse) if p) or None, 300, "adresse", report)
        if place
        else None,
        lon=row.longitude if has_point else None,
        lat=row.latitude if has_point else None,
        area_communes=sorted(set(communes)),
        area_departements=sorted(set(departements)),
        area_epcis=sorted(set(epcis)),
        national=national,
    )


def mapped_structures(rows: Iterator[dict[str, Any]], report: ImportReport) -> Iterator[StructureRow | Rejection]:
    for raw in rows:
        report.read["structures"] += 1
        yield map_structure(raw, report)


def mapped_services(rows: Iterator[dict[str, Any]], report: ImportReport) -> Iterator[ServiceRow | Rejection]:
    for raw in rows:
        report.read["services"] += 1
        mapped = map_service(raw, report)
        if mapped is not None:
            yield mapped


def run(
    conn: psycopg.Connection,
    extract: Extract,
    *,
    tick: Callable[[], None] = lambda: None,
    allow_mass_archive: bool = False,
) -> ImportReport:
    """Import one full extract in the caller's transaction (directory/imports.py)."""
    report = ImportReport()
    return imports.run(
        conn,
        source=SOURCE,
        structures=mapped_structures(extract.structures, report),
        services=mapped_services(extract.services, report),
        report=report,
        tick=tick,
        allow_mass_archive=allow_mass_archive,
    )
