"""Schemathesis hooks, loaded by the CLI from schemathesis.toml (`hooks`), in the CLI's own process.

Serialise `ast.parse`. CPython 3.11 (3.11.7 here) keeps the AST converter's recursion depth in state
that every thread shares: when two threads build an AST at once and a garbage collection runs a
finaliser in between, one of them fails with `SystemError: AST constructor recursion depth mismatch`
(reproduced here with two threads parsing while a third churns finalisers; see CPython gh-106905).
Hypothesis parses the source of each lambda it describes — the filters Schemathesis' coverage phase
builds — so with `--workers 2` a run reported a random "Runtime Error" on an operation whose requests
and answers were fine. A lock around the parse removes the race and changes nothing else: parses are
few (Hypothesis caches them per source file).
"""

from __future__ import annotations

import ast
import json
import os
import re
import threading
import uuid
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import schemathesis

# Modules Schemathesis imports lazily, from its worker threads, on first use: imported here, in the
# main thread, so that no worker builds an AST for them mid-run (the race below struck one such import).
import schemathesis.transport.asgi  # noqa: F401, E402
import schemathesis.transport.wsgi  # noqa: F401, E402

_lock = threading.Lock()
_parse = ast.parse


def _serialised_parse(*args: Any, **kwargs: Any) -> Any:
    with _lock:
        return _parse(*args, **kwargs)


if getattr(ast.parse, "__wrapped__", None) is None:  # loaded once, but never wrap twice
    _serialised_parse.__wrapped__ = _parse  # type: ignore[attr-defined]
    ast.parse = _serialised_parse


# --- Deliberate deviations ---------------------------------------------------------------------------
#
# `positive_data_acceptance` expects a request valid by the document to be accepted (2xx), unless it
# names a record that does not exist (404) or conflicts with its state (409). The document states
# every rule a schema can state: types, bounds, patterns, enums, unique items, if/then. The rules
# below cannot be stated by a schema; the server refuses such a request with a 422 naming the field
# (or a 412 for a stale ETag), and this check accepts that answer only when every error it names is
# one of these rules. Any other refusal of valid-looking data still fails the run: it would mean the
# document and the server disagree. schemathesis.toml lets 412 and 422 through
# `positive_data_acceptance` so that this check, which knows the reasons, judges them.


class Deviation(NamedTuple):  # not a dataclass: the CLI loads this file outside sys.modules
    reason: str
    operations: str  # regex on "METHOD /path"
    field: str  # regex on "in:name" (query, path, header) or "body:/pointer"
    message: str  # regex on the error's message


ANY = r".*"
_EXISTS = (
    "A schema says an id is a UUID and a code has the shape of an INSEE code; not that it names a record "
    "or territory that exists and that the caller may use. The server answers 422 naming the field."
)
_RELATED = (
    "A rule that relates two values of the request (parameters or members): OpenAPI cannot relate query "
    "parameters at all, and JSON Schema cannot compare two values."
)
_NOW = "A rule relative to the present moment, which a static document cannot state."
_HEURISTIC = (
    "Free text about a child is refused when it looks like identifying data (a phone number, an e-mail, "
    "a street address, a date of birth): a heuristic, not a shape (directory/free_text.py)."
)
_ROLE = "A rule that depends on who calls (their role or organisation): one document serves every role."
_STATE = "A rule on the stored record's current state, which the request cannot show."

DEVIATIONS = (
    Deviation(
        "A cursor is signed by the server: a schema gives its shape, not its signature.",
        ANY,
        r"query:cursor",
        r"malformed cursor|not issued by this server|belongs to another list",
    ),
    Deviation(
        _EXISTS,
        ANY,
        r"body:/(case_id|service_id|location_id|organisation_id|to_organisation_id|to_service_id)",
        r"^no such|needs an active organisation|^no CRIP for",
    ),
    Deviation(
        _EXISTS,
        ANY,
        r"body:/(residence_collectivite|found_in_commune|commune_code|collectivite_code|seat_commune_code"
        r"|communes|departements|collectivites|regions)(/\d+)?",
        r"^no (commune|collectivit[eé]|d[eé]partement|r[eé]gion) with this|^item \d+ is not a known"
        r"|needs an existing collectivité",
    ),
    Deviation(_EXISTS, ANY, r"query:(commune|postal_code|collectivite)", r"^no (commune|collectivité)"),
    Deviation(
        _EXISTS + " HSDS filters name a taxonomy or term of /v1/hsds/taxonomies (the sources' terms follow the "
        "imported data).",
        r"GET /v1/hsds/",
        r"query:(taxonomy_id|taxonomy_term_id)",
        r"^no such taxonomy( term)?$",
    ),
    Deviation(
        _EXISTS + " A territory to keep away from must also have a boundary in the reference data.",
        r"GET /v1/services/search",
        r"query:(away_from|outside)",
        r"^no (commune|département|collectivité)( or collectivité)? with this code|has no boundary in the reference"
        r"|^item \d+ is not a département or collectivité code",
    ),
    Deviation(
        "A webhook URL is accepted once its host resolves, to public addresses only: that is the network's "
        "answer at the time, not a shape.",
        r"POST /v1/webhook-subscriptions",
        r"body:/url",
        r"the host (does not resolve|did not resolve in time|resolves to a private)",
    ),
    Deviation(
        _RELATED,
        r"GET /v1/services/search",
        r"query:(lat|lon|open_at|bbox)",
        r"give exactly one origin|lat and lon go together|use open_now or open_at|the box is inverted"
        r"|the box may span",
    ),
    Deviation(
        _RELATED,
        r"GET /v1/services/search",
        r"query:(away_from|min_distance_km)",
        r"min_distance_km needs a place|say how far from away_from",
    ),
    Deviation(
        _RELATED + " OGC API Features states bbox as an array of 4 or 6 numbers (the schema GIS clients read): "
        "each minimum at most its maximum relates them, and which of them are longitudes (±180), latitudes "
        "(±90) or heights depends on how many there are.",
        r"GET /ogc/collections/\w+/items",
        r"query:bbox",
        r"inverted|antimeridian|within ±180|minimum height|must be finite",
    ),
    Deviation(
        _RELATED + " A map tile's column and row are each below 2^z, its zoom: the document bounds them by the "
        "deepest zoom's (4095).",
        r"GET /v1/tiles/",
        r"path:(x|y)",
        r"must be less than 2\^z",
    ),
    Deviation(
        _RELATED + " A pattern states an RFC 3339 date-time's syntax, not which days a month has.",
        r"GET /ogc/collections/\w+/items",
        r"query:datetime",
        r"not a date-time that exists|ends before it starts",
    ),
    Deviation(
        _RELATED + " The period is also relative to today: at most 60 months, ending by default this month.",
        r"GET /v1/stats/",
        r"query:(from|group_by|geometry)",
        r"at most 60 months|the period starts after it ends|cells|one collectivité at a time"
        r"|retention has deleted older cases",
    ),
    Deviation(
        _RELATED,
        ANY,
        r"body:/.*",
        r"must come after|age_min must not exceed age_max|an interval needs a start and an end that differ"
        r"|intervals of a day must not overlap|exceptions must not repeat a date|weekly hours need"
        r"|schedule takes no weekly hours|an area needs territory codes|a confidential location needs"
        r"|name each assignee once|needs one of|takes no reason code|say why in a few words",
    ),
    Deviation(_HEURISTIC, ANY, r"body:/.*", r"^looks like "),
    Deviation(
        _RELATED + " A location's point must lie in its commune (or within 2 km): a fact of the map.",
        r"(POST|PATCH) /v1/locations",
        r"body:/point",
        r"^the point is more than 2 km from",
    ),
    Deviation(_NOW, ANY, r"body:/as_of", r"lies in the future"),
    Deviation(
        "An identity binding names an OpenID provider this server is configured for (MAILLAGE_OIDC_ISSUERS) "
        "and one of that provider's mapped claims: a fact of the deployment, which the document cannot list.",
        r"POST /v1/identity-bindings",
        r"body:/(issuer|claim)",
        r"not a configured OpenID provider|not one of this provider's mapped claims",
    ),
    Deviation(
        "A URL is stored encoded (an IDN host in punycode, a non-ASCII path percent-encoded): one within the "
        "stated 500 characters as sent may exceed them once encoded, which no schema can measure.",
        ANY,
        r"body:/website",
        r"more than 500 characters once encoded",
    ),
    Deviation(
        "An e-mail address must be deliverable in principle: the special-use and reserved domains of RFC 6761 "
        "(.test, .example, .invalid, .localhost…) are refused, as email-validator lists them; `format: email` "
        "states the syntax only.",
        ANY,
        r"body:/(.*_)?email",
        r"special-use or reserved name",
    ),
    Deviation(
        _ROLE,
        ANY,
        r"body:/(organisation_id|visibility|kind|point|commune_code|address|to_organisation_id)",
        r"admins must say which organisation|only the location's own organisation|CRIPs are seeded"
        r"|only the organisation of a confidential location|goes to another organisation",
    ),
    Deviation(
        _STATE,
        ANY,
        r"body:/.*",
        r"the case is closed|a radius needs the service to have a location|cannot be cleared",
    ),
)


def deliberate(operation: str, error: dict[str, Any]) -> Deviation | None:
    """The deviation that explains this error of a 422, or None."""
    where = error.get("pointer") if error.get("in") == "body" else error.get("name")
    field = f"{error.get('in')}:{where}"
    message = str(error.get("message", ""))
    for deviation in DEVIATIONS:
        if (
            re.match(deviation.operations, operation)
            and re.fullmatch(deviation.field, field)
            and re.search(deviation.message, message)
        ):
            return deviation
    return None


@schemathesis.check
def rejections_are_deliberate(ctx: Any, response: Any, case: Any) -> None:
    """A valid-looking request refused with a 412 or a 422 (a 400 under /ogc, OGC API Features' status
    for the same refusal) must be refused for a reason listed above."""
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (400, 412, 422):
        return
    operation = case.operation.label  # "POST /v1/cases"
    if response.status_code == 400 and not operation.startswith("GET /ogc/"):
        # schemathesis.toml lets 400 through positive_data_acceptance for /ogc only: elsewhere, as there.
        raise AssertionError(f"{operation}: valid data refused with 400: {response.text[:500]}")
    problem = response.json()
    if response.status_code == 412:
        # The document states an ETag's syntax; which version is current is the record's state.
        if problem.get("code") != "stale_version":
            raise AssertionError(f"{operation}: a 412 that is not a stale ETag: {problem}")
        return
    if problem.get("code") == "idempotency_key_reused":
        # A key's uniqueness across requests is not a property of one request.
        return
    unexplained = [error for error in problem.get("errors") or [{}] if deliberate(operation, error) is None]
    if unexplained:
        raise AssertionError(
            f"{operation}: valid data refused with {response.status_code} for a reason the document could "
            "state, or that no "
            f"deviation in tests/schemathesis/hooks.py explains: {unexplained}"
        )


# --- Real values in valid-looking requests -----------------------------------------------------------
#
# A schema says a collectivité code matches `^[0-9]{1,3}[A-Z]{1,2}$`; almost none of the strings that
# match name one. Left alone, nearly every generated case or handoff is refused for naming no territory
# or record, and the stateful phase never gets past its first step: no case exists, so no handoff,
# transition or pathway is ever reached along the document's links. Before a *positive* case is sent,
# the codes and ids it carries that name nothing are replaced with real ones, read by the test from the
# run's database (tests/test_schemathesis.py writes them to the file named below). One case in four is
# left as generated, so "names no record" answers are still exercised; negative cases are never touched
# (making an invalid request valid would defeat negative_data_rejection). Ids of records the run itself
# creates (a 201 with an `id`) join the known ones, so values carried along links are kept.

REFERENCE_ENV = "MAILLAGE_SCHEMATHESIS_REFERENCE"

# Which list of real values a field draws from, by where it is. "own_*" lists hold what the role may
# write (a partner's own organisation and listings); the others what it may read.
_BODY_KINDS = {
    "residence_collectivite": "collectivites",
    "collectivite_code": "collectivites",
    "found_in_commune": "communes",
    "commune_code": "communes",
    "seat_commune_code": "communes",
    "communes": "communes",
    "collectivites": "collectivites",
    "departements": "departements",
    "regions": "regions",
    "organisation_id": "own_organisations",
    "to_organisation_id": "organisations",
    "service_id": "own_services",
    "to_service_id": "services",
    "location_id": "own_locations",
    "case_id": "cases",
}
_QUERY_KINDS = {
    "commune": "communes",
    "postal_code": "postal_codes",
    "collectivite": "collectivites",
    "departement": "departements",
    "organisation_id": "organisations",
    "organization_id": "organisations",
    "commune_code": "communes",
    "departement_code": "departements",
    "collectivite_code": "collectivites",
    "region_code": "regions",
}
_PATH_KINDS = {
    "case_id": "cases",
    "handoff_id": "handoffs",
    "service_id": "services",
    "location_id": "locations",
    "organisation_id": "organisations",
    "organization_id": "organisations",
    "service_at_location_id": "services",
    "area_id": "areas",
}
_CODE_PATHS = {"/v1/collectivites/": "collectivites", "/v1/departements/": "departements"}
# The features of the OGC collections (/ogc/collections/{collection}/items/{feature_id}).
_FEATURE_KINDS = {name: name for name in ("services", "regions", "departements", "collectivites", "communes")}
# A record the run creates joins the list its collection feeds.
_CREATED = {
    "POST /v1/services": ("services", "own_services"),
    "POST /v1/locations": ("locations", "own_locations"),
    "POST /v1/service-areas": ("areas", "own_areas"),
    "POST /v1/organisations": ("organisations", "own_organisations"),
    "POST /v1/cases": ("cases",),
    "POST /v1/handoffs": ("handoffs",),
}
_SEARCH_ORIGINS = (("commune",), ("postal_code",), ("lat", "lon"), ("bbox",))

_reference: dict[str, Any] | None = None
_reference_lock = threading.Lock()


def _known() -> dict[str, Any]:
    global _reference
    with _reference_lock:
        if _reference is None:
            path = os.environ.get(REFERENCE_ENV)
            _reference = json.loads(Path(path).read_text()) if path else {}
            for kind, values in list(_reference.items()):
                if isinstance(values, list):
                    _reference[kind + ":set"] = set(values)
        return _reference


def _real(kind: str, value: Any) -> Any:
    """`value` if it names a real record (or is left as generated), else a real one chosen by its hash:
    the same generated value always maps to the same real one, so runs stay reproducible."""
    known = _known()
    values = known.get(kind)
    if not values or not isinstance(value, str) or value in known[kind + ":set"]:
        return value
    return values[zlib.crc32(value.encode()) % len(values)]


def _real_items(kind: str, items: list[Any]) -> list[Any]:
    real = [_real(kind, item) for item in items]
    return list(dict.fromkeys(real))  # unique, as the schema says, in order


def _realise(mapping: dict[str, Any], kinds: dict[str, str], write: bool) -> None:
    for name, kind in kinds.items():
        value = mapping.get(name)
        if value is None:
            continue
        if not write and kind.startswith("own_"):
            kind = kind[4:]
        mapping[name] = _real_items(kind, value) if isinstance(value, list) else _real(kind, value)


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive:
        return
    operation = case.operation
    if zlib.crc32(repr((operation.label, case.body, case.query, case.path_parameters)).encode()) % 4 == 0:
        return  # one case in four as generated (reproducibly: by its hash)
    method = operation.method.upper()
    write = method != "GET"
    if isinstance(case.body, dict):
        _realise(case.body, _BODY_KINDS, write)
        commune = case.body.get("commune_code")
        points = _known().get("commune_points") or {}
        if isinstance(case.body.get("point"), dict) and commune in points:
            # A location's point must lie in its commune: put it at the commune's own point.
            case.body["point"] = {"type": "Point", "coordinates": points[commune]}
        receiver = (_known().get("service_organisation") or {}).get(case.body.get("to_service_id"))
        if receiver is not None:
            # A handoff names a service of the organisation it goes to.
            case.body["to_organisation_id"] = receiver
    if isinstance(case.query, dict):
        _realise(case.query, _QUERY_KINDS, write=False)
        if "cursor" in case.query:
            # Only the server signs cursors; a generated one is refused, and the first page is the one
            # worth testing.
            del case.query["cursor"]
        if operation.path == "/v1/services/search":
            _one_origin(case.query)
    headers = case.headers if isinstance(case.headers, dict) else {}
    if "Idempotency-Key" in headers:
        # A fresh key: generated keys repeat ("0", "A"…), and a reused key only replays or refuses.
        headers["Idempotency-Key"] = str(uuid.uuid4())
    if isinstance(case.path_parameters, dict) and method != "DELETE":
        # Never a real id in a DELETE: the demo listings must outlive the run's first role.
        _realise(case.path_parameters, _PATH_KINDS, write)
        if "feature_id" in case.path_parameters and operation.path.startswith("/ogc/collections/"):
            kind = _FEATURE_KINDS.get(operation.path.split("/")[3])
            if kind is not None:
                case.path_parameters["feature_id"] = _real(kind, case.path_parameters["feature_id"])
        if "code" in case.path_parameters:
            kind = next((k for prefix, k in _CODE_PATHS.items() if operation.path.startswith(prefix)), None)
            if kind is not None:
                case.path_parameters["code"] = _real(kind, case.path_parameters["code"])


def _one_origin(query: dict[str, Any]) -> None:
    """A search starts from exactly one origin and takes open_now or open_at, not both."""
    present = [origin for origin in _SEARCH_ORIGINS if any(name in query for name in origin)]
    for origin in present[1:]:  # the first one generated
        for name in origin:
            query.pop(name, None)
    if not present:
        communes = _known().get("communes") or []
        if communes:
            query["commune"] = communes[zlib.crc32(repr(sorted(query.items())).encode()) % len(communes)]
    elif present[0] == ("lat", "lon") and not ("lat" in query and "lon" in query):
        query.setdefault("lat", 48.8566)
        query.setdefault("lon", 2.3522)
    if "open_at" in query:
        query.pop("open_now", None)


@schemathesis.hook
def after_call(ctx: Any, case: Any, response: Any) -> None:
    kinds = _CREATED.get(case.operation.label)
    if kinds is None or response.status_code != 201:
        return
    try:
        created = response.json().get("id")
    except ValueError:
        return
    if isinstance(created, str):
        known = _known()
        with _reference_lock:
            for kind in kinds:
                if kind in known and created not in known[kind + ":set"]:
                    known[kind].append(created)
                    known[kind + ":set"].add(created)
                elif kind not in known:  # cases and handoffs exist only once the run makes them
                    known[kind] = [created]
                    known[kind + ":set"] = {created}
