"""Opaque, signed keyset cursors and the `next` link of list responses.

A cursor carries the last key of the page and the list it belongs to, signed with a server secret:
a client cannot forge a position, nor replay a cursor on another list.
"""

import base64
import hashlib
import hmac
import json

from fastapi import Request

from .errors import InvalidParameter


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


def next_link(request: Request, cursor: str) -> str:
    return str(request.url.include_query_params(cursor=cursor))
