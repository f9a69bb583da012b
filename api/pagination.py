"""Keyset pagination for every list: opaque signed cursors, the `limit + 1` probe, and the `next` link.

A cursor carries the last key of the page and the list it belongs to, signed with a server secret:
a client cannot forge a position, nor replay a cursor on another list. A list route does

    page = Pagination(request, "audit", int, limit=limit, cursor=cursor)
    rows = await fetch(after=page.after, limit=page.fetch)      # one row more than the page holds
    rows, links = page.finish(rows, key=lambda row: row[0])      # trimmed rows, [{"rel": "next", …}]

and builds its own response shape from `links` (or `page.next_url`). Construct it in the route body,
after the policy dependency: a bad cursor is a 422, and authorisation comes first (DESIGN §3).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request
from starlette.datastructures import URL

from .errors import InvalidParameter
from .links import absolute

Row = TypeVar("Row")

# The shape of a list's key: a type (a scalar key, e.g. `int`, `str`) or a number of items (a
# composite key such as (name, id), handed back as a tuple).
KeyShape = type | int


# What `Cursors.encode` writes: a base64url payload, a dot, a 16-byte base64url signature.
CURSOR_SYNTAX = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$"


class Cursors:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.digest(self._secret, payload, hashlib.sha256)[:16]).rstrip(b"=").decode()

    def encode(self, scope: str, key: object) -> str:
        payload = json.dumps({"s": scope, "k": key}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + self._sign(payload)

    def decode(self, scope: str, cursor: str | None) -> object | None:
        if cursor is None:
            return None
        body, _, signature = cursor.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError as exc:
            raise InvalidParameter("cursor", "malformed cursor") from exc
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise InvalidParameter("cursor", "this cursor was not issued by this server or was altered")
        data = json.loads(payload)
        if data.get("s") != scope:
            raise InvalidParameter("cursor", "this cursor belongs to another list")
        return data.get("k")


def _shaped(key: object, shape: KeyShape) -> Any:
    if key is None:
        return None
    if isinstance(shape, int):
        if isinstance(key, list) and len(key) == shape:
            return tuple(key)
    elif isinstance(key, shape) and not (isinstance(key, bool) and shape is not bool):
        return key
    raise InvalidParameter("cursor", "malformed cursor")


def list_scope(name: str, request: Request) -> str:
    """The list a cursor belongs to when a query defines it: `name` and the query minus its page
    parameters (`cursor`, `limit`), so a cursor replayed with other filters is refused."""
    items = sorted((k, v) for k, v in request.query_params.multi_items() if k not in ("cursor", "limit"))
    return f"{name}:" + hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def next_link(request: Request, cursor: str) -> str:
    """This request's own path and query with `cursor` set, under the configured public base URL."""
    url = URL(absolute(request.url.path)).replace(query=request.url.query)
    return str(url.include_query_params(cursor=cursor))


class Pagination:
    """One page of a list: where it starts (`after`, checked against the key's shape), how many rows
    to fetch (`fetch`: one more than the page, to know whether another page follows), and the links
    of the answer."""

    def __init__(self, request: Request, scope: str, shape: KeyShape, *, limit: int, cursor: str | None) -> None:
        self.request, self.scope, self.limit = request, scope, limit
        self._cursors: Cursors = request.app.state.cursors
        self.after: Any = _shaped(self._cursors.decode(scope, cursor), shape)
        self.next_url: str | None = None

    @property
    def fetch(self) -> int:
        return self.limit + 1

    def finish(self, rows: Sequence[Row], *, key: Callable[[Row], object]) -> tuple[list[Row], list[dict[str, str]]]:
        """The page's rows (at most `limit` of the `fetch` asked for) and its links."""
        if len(rows) <= self.limit:
            return list(rows), []
        page = list(rows[: self.limit])
        return page, self.links_after(key(page[-1]))

    def links_after(self, last_key: object | None) -> list[dict[str, str]]:
        """The links of a page whose rows the domain trimmed itself: `next` after `last_key`, if any."""
        if last_key is None:
            self.next_url = None
            return []
        key = list(last_key) if isinstance(last_key, tuple) else last_key
        self.next_url = next_link(self.request, self._cursors.encode(self.scope, key))
        return [{"rel": "next", "href": self.next_url}]
