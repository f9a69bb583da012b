"""ETags and If-Match (RFC 9110 §13): a listing's ETag is its row version."""

import re

from fastapi import Request

from directory.errors import PreconditionRequired, StaleVersion
from directory.revisions import Expected

_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')


def etag(version: int) -> str:
    return f'"{version}"'


def if_match(request: Request) -> Expected:
    """The versions the caller holds (None for `If-Match: *`). A missing header (428) or one that can
    match nothing (412) is not refused here but by the domain, once the record is found in the
    caller's scope: "not yours" must stay a 404 whatever the headers say."""
    header = request.headers.get("if-match")
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
