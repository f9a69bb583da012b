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
import re
import threading
from typing import Any, NamedTuple

import schemathesis

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
        r"|the box may span|coordinates must be finite",
    ),
    Deviation(
        _RELATED + " The period is also relative to today: at most 60 months, ending by default this month.",
        r"GET /v1/stats/",
        r"query:(from|group_by|geometry)",
        r"at most 60 months|the period starts after it ends|cells|one collectivité at a time",
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
    """A valid-looking request refused with a 412 or a 422 must be refused for a reason listed above."""
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (412, 422):
        return
    operation = case.operation.label  # "POST /v1/cases"
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
            f"{operation}: valid data refused with 422 for a reason the document could state, or that no "
            f"deviation in tests/schemathesis/hooks.py explains: {unexplained}"
        )
