"""Scope before the body: a route's path id is checked against the caller's scope as a dependency.

FastAPI validates a request's body after running the route's dependencies: checking scope here, right
after the route's policy, makes "not yours" (and "does not exist") a 404 before any 428, 412 or 422 —
whatever the caller sent (DESIGN §3, order of checks). The rule itself is `directory.access.in_scope`;
the domain function checks it again when it loads the row, in the write's own transaction.
"""

from __future__ import annotations

import uuid

from fastapi import Request

from directory import access
from directory.access import Scoped
from directory.errors import NotFound

from .audit import Entry, record
from .db import ReaderDep


class InScope:
    """Dependency: NotFound unless the path parameter `param` names a `kind` row in the caller's scope.
    Declare it after the route's policy (it reads the principal the policy resolved)."""

    def __init__(self, kind: Scoped, param: str) -> None:
        self.kind, self.param = kind, param

    async def __call__(self, request: Request, conn: ReaderDep) -> None:
        principal = getattr(request.state, "principal", None)
        if principal is None:
            raise RuntimeError("InScope must come after the route's policy in its parameters")
        noun = self.kind.value.replace("_", " ")
        try:
            row_id = uuid.UUID(str(request.path_params[self.param]))
        except ValueError:
            row_id = None
        if row_id is None or not await access.in_scope(conn, self.kind, row_id, principal):
            audit = getattr(request.state, "audit", None)
            if audit is not None:  # case data: the refusal is journalled like any other
                await record(conn, Entry(request, principal, audit[0], audit[1], row_id), 404)
            raise NotFound(f"no such {noun}")

    def __repr__(self) -> str:
        return f"InScope({self.kind}, {self.param!r})"
