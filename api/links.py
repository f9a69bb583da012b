"""Absolute links (`next`, `Location`) from the configured public base URL, never from the Host header.

`api.middleware.PublicOrigin` binds the base URL for each request it accepts; `absolute` reads it,
so a helper deep in a route needs no request object to write a link.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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
