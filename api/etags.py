"""ETags and If-Match (RFC 9110 §13): a listing's ETag is its row version."""

import re
from typing import Annotated, Any

from fastapi import Header

from directory.errors import PreconditionRequired, StaleVersion
from directory.revisions import Expected

_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')


def etag(version: int) -> str:
    return f'"{version}"'


def documented(status: int = 200, *, etag: bool = True, location: bool | None = None) -> dict[int | str, Any]:
    """OpenAPI `responses=` entry for the headers a successful answer carries: its `ETag` (when it
    has one) and, on a 201, the `Location` of what was created."""
    headers: dict[str, Any] = {}
    if etag:
        headers["ETag"] = {
            "description": "The record's version: send it back in If-Match to change it.",
            "schema": {"type": "string"},
        }
    if status == 201 if location is None else location:
        headers["Location"] = {"description": "The URL of what was created.", "schema": {"type": "string"}}
    return {status: {"headers": headers}}


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='Required: the ETag of the record as you last read it (e.g. `"3"`), or `*`. '
        "Without it the write is refused with a 428, with a stale one a 412 (after the record is found "
        "in your scope).",
    ),
]


def if_match(header: IfMatch = None) -> Expected:
    """The versions the caller holds (None for `If-Match: *`). A missing header (428) or one that can
    match nothing (412) is not refused here but by the domain, once the record is found in the
    caller's scope: "not yours" must stay a 404 whatever the headers say."""
    if header is None:
        return Expected(None, PreconditionRequired("send If-Match with the ETag of the record you read (GET it first)"))
    if header.strip() == "*":
        return Expected(None)
    versions: set[int] = set()
    position = 0
    while position < len(header):
        match = _TAG.match(header, position)
        if match is None:
            return Expected(None, StaleVersion('If-Match must hold ETags such as "3"'))
        weak, value = match.groups()
        if not weak and value.isdigit() and len(value) < 10:  # weak tags never match (strong comparison)
            versions.add(int(value))
        position = match.end()
    if not versions:
        return Expected(None, StaleVersion("no ETag in If-Match matches this record"))
    return Expected(frozenset(versions))
