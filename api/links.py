"""Absolute links (`next`, `Location`) from the configured public base URL, never from the Host header.

`api.middleware.PublicOrigin` binds the base URL for each request it accepts; `absolute` reads it,
so a helper deep in a route needs no request object to write a link.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_base_url: ContextVar[str] = ContextVar("maillage_public_base_url")


@contextmanager
def bind_base_url(base_url: str) -> Iterator[None]:
    token = _base_url.set(base_url.rstrip("/"))
    try:
        yield
    finally:
        _base_url.reset(token)


def absolute(path_and_query: str) -> str:
    """`/v1/services/…?…` → `https://api.example/v1/services/…?…` (the configured public base URL)."""
    if not path_and_query.startswith("/") or path_and_query.startswith("//"):
        raise ValueError(f"expected an absolute path, got {path_and_query!r}")
    try:
        base = _base_url.get()
    except LookupError:
        raise RuntimeError("no public base URL is bound: build links inside a request") from None
    return base + path_and_query


# --- OpenAPI links (the document's map of the main flows) -------------------------------------

ID = "$response.body#/id"
ETAG = "$response.header.ETag"


def follow(
    operation: str, description: str, *, body: dict[str, str] | None = None, **parameters: str
) -> dict[str, Any]:
    """An OpenAPI Link object to `operation` (a route's function name, which is its operationId).
    `parameters` map the target's parameters to runtime expressions (`path_id="$response.body#/id"`
    for a path parameter, `if_match=ETAG` for the If-Match header); `body` fills members of its body."""
    named: dict[str, str] = {}
    for name, expression in parameters.items():
        if name == "if_match":
            named["header.If-Match"] = expression
        else:
            named[f"path.{name}"] = expression
    link: dict[str, Any] = {"operationId": operation, "description": description, "parameters": named}
    if body:
        link["requestBody"] = body
    return link
