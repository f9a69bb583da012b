"""ETags and If-Match (RFC 9110 §13): a listing's ETag is its row version."""

import re
from typing import Annotated, Any

from fastapi import Depends

from directory.errors import PreconditionRequired, StaleVersion
from directory.revisions import Expected

from .errors import InvalidParameter
from .headers import RequestHeader


def etag(version: int) -> str:
    return f'"{version}"'


def documented(
    status: int = 200, *, etag: bool = True, location: bool | None = None, links: dict[str, Any] | None = None
) -> dict[int | str, Any]:
    """OpenAPI `responses=` entry for a successful answer: the headers it carries — its `ETag` (when it
    has one) and, on a 201, the `Location` of what was created — and the links to what a client does
    next with it (`api.links.follow`)."""
    headers: dict[str, Any] = {}
    if etag:
        headers["ETag"] = {
            "description": "The record's version: send it back in If-Match to change it.",
            "schema": {"type": "string"},
        }
    if status == 201 if location is None else location:
        headers["Location"] = {"description": "The URL of what was created.", "schema": {"type": "string"}}
    entry: dict[str, Any] = {"headers": headers}
    if links:
        entry["links"] = links
    return {status: entry}


# RFC 9110 §13.1.1: "*" or a list of entity tags; an entity tag's characters are etagc (no obs-text).
_ENTITY_TAG = r'(?:W/)?"[\x21\x23-\x7e]*"'
IF_MATCH_SYNTAX = rf"^[ \t]*(?:\*|{_ENTITY_TAG}(?:[ \t]*,[ \t]*{_ENTITY_TAG})*)[ \t]*$"
_SYNTAX = re.compile(IF_MATCH_SYNTAX)
_TAGS = re.compile(r'(W/)?"([^"]*)"')

IF_MATCH = RequestHeader(
    "If-Match",
    description='The ETag of the record as you last read it (e.g. `"3"`), or `*`. Without it the write is '
    "refused with a 428, with a stale one a 412, with one that is not a list of entity tags a 422 (each "
    "only once the record is found in your scope: otherwise a 404).",
    pattern=IF_MATCH_SYNTAX,
    max_length=1024,
)

# A service's closures, reopening and verification took no If-Match when they were first published, and
# the API clients written then send none: refusing them with a 428 would break them. So there the header
# is optional — a deliberate, backwards-compatible exception to "If-Match required" (DESIGN §2) — and a
# client that sends it is kept from ending or replacing a colleague's newer closure unseen, with the
# same 412 and 422 as everywhere else.
OPTIONAL_IF_MATCH = RequestHeader(
    "If-Match",
    description='The ETag of the service as you last read it (e.g. `"3"`), or `*`. Optional here, for the '
    "clients written before it was read: without it the change applies to the service as it is now. Send "
    "it: with a stale one the change is refused with a 412, so that you never end or replace a closure you "
    "have not seen; with one that is not a list of entity tags a 422 (each only once the service is found "
    "in your scope: otherwise a 404).",
    pattern=IF_MATCH_SYNTAX,
    max_length=1024,
    required=False,
)


def _expected(header: str) -> Expected:
    """The versions an If-Match field value names, or why it can match none (see `if_match`)."""
    if len(header) > 1024 or not _SYNTAX.match(header):
        return Expected(None, InvalidParameter("If-Match", 'a list of ETags such as "3", or *', location="header"))
    if header.strip() == "*":
        return Expected(None)
    # Weak tags never match (strong comparison); our ETags are version numbers.
    versions = {int(value) for weak, value in _TAGS.findall(header) if not weak and value.isdigit() and len(value) < 10}
    if not versions:
        return Expected(None, StaleVersion("no ETag in If-Match matches this record"))
    return Expected(frozenset(versions))


def if_match(header: Annotated[str | None, Depends(IF_MATCH)]) -> Expected:
    """The versions the caller holds (None for `If-Match: *`). A missing header (428), a malformed one
    (422) or one that can match nothing (412) is not refused here but by the domain, once the record
    is found in the caller's scope: "not yours" must stay a 404 whatever the headers say."""
    if header is None:
        return Expected(None, PreconditionRequired("send If-Match with the ETag of the record you read (GET it first)"))
    return _expected(header)


def optional_if_match(header: Annotated[str | None, Depends(OPTIONAL_IF_MATCH)]) -> Expected | None:
    """As `if_match`, where the header is optional (OPTIONAL_IF_MATCH): None when it is absent — a write
    without a precondition, which the domain applies to the row as it holds it once locked."""
    return None if header is None else _expected(header)
