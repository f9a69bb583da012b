"""ETags and If-Match (RFC 9110 §13): a listing's ETag is its row version."""

import re

from fastapi import Request

from directory.errors import StaleVersion

from .errors import PreconditionRequired

_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')


def etag(version: int) -> str:
    return f'"{version}"'


def if_match(request: Request) -> set[int] | None:
    """The versions the caller holds; None for `If-Match: *`. Writes without the header are refused
    (428), so nobody overwrites a change they have not seen."""
    header = request.headers.get("if-match")
    if header is None:
        raise PreconditionRequired("send If-Match with the ETag of the listing you read (GET it first)")
    if header.strip() == "*":
        return None
    versions: set[int] = set()
    position = 0
    while position < len(header):
        match = _TAG.match(header, position)
        if match is None:
            raise StaleVersion('If-Match must hold ETags such as "3"')
        weak, value = match.groups()
        if not weak and value.isdigit() and len(value) < 10:  # weak tags never match (strong comparison)
            versions.add(int(value))
        position = match.end()
    if not versions:
        raise StaleVersion("no ETag in If-Match matches this listing")
    return versions
