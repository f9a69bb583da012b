"""The one table from errors to HTTP statuses, and RFC 9457 problem+json rendering for every error.

Domain packages raise HTTP-free errors carrying a stable `code`; this module alone knows statuses.
Validation errors name the offending parameter or JSON pointer but never echo the value: inputs can
be a child's whereabouts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from psycopg import OperationalError as DriverOperationalError
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError as SAOperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path, get_route_path

from directory import errors as directory_errors
from geo import errors as geo_errors
from sync import errors as sync_errors

from .logs import logged_path

PROBLEM_JSON = "application/problem+json"

log = structlog.get_logger()


class ApiError(Exception):
    """Errors that only exist at the HTTP boundary (authentication, limits, malformed requests)."""

    code: ClassVar[str] = "api_error"
    headers: Mapping[str, str] = {}

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if headers:
            self.headers = headers


class Unauthenticated(ApiError):
    code = "unauthenticated"

    def __init__(self, detail: str, *, token_presented: bool = True) -> None:
        # RFC 6750 §3: no error attribute when the request carried no token at all.
        challenge = 'Bearer realm="maillage", error="invalid_token"' if token_presented else 'Bearer realm="maillage"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class RoleNotAllowed(ApiError):
    code = "forbidden"


class IdentityNotBound(ApiError):
    """A valid token from an outside provider whose claims no identity binding names (or name several
    that disagree): the person is known to their provider, not to Maillage."""

    code = "identity_not_bound"


class IdentityProviderUnavailable(ApiError):
    """An outside provider's keys could not be read, so its token can be neither accepted nor refused."""

    code = "unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": "5"})


class InvalidParameter(ApiError):
    """A parameter that passed type validation but makes no sense (inverted bbox, unknown cursor…)."""

    code = "invalid_request"  # the same code as schema validation errors: "fix this input"

    def __init__(self, name: str, detail: str, *, location: str = "query") -> None:
        super().__init__(f"{name}: {detail}")
        self.errors = [{"in": location, "name": name, "message": detail}]


class RateLimited(ApiError):
    code = "rate_limited"


class IdempotencyKeyRequired(ApiError):
    code = "idempotency_key_required"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.errors = [{"in": "header", "name": "Idempotency-Key", "message": detail}]


class NotAcceptable(ApiError):
    """No representation the route offers is acceptable to the caller's `Accept` (RFC 9110 §15.5.7)."""

    code = "not_acceptable"

    def __init__(self, offered: Sequence[str]) -> None:
        super().__init__(f"this resource is available as {', '.join(offered)}", headers={"Vary": "Accept"})
        self.errors = [{"in": "header", "name": "Accept", "message": "none of " + ", ".join(offered)}]
        self.extra = {"offered": list(offered)}


STATUS_BY_ERROR: dict[type[Exception], int] = {
    Unauthenticated: 401,
    RoleNotAllowed: 403,
    IdentityNotBound: 403,
    IdentityProviderUnavailable: 503,
    InvalidParameter: 422,
    directory_errors.PreconditionRequired: 428,
    RateLimited: 429,
    IdempotencyKeyRequired: 400,
    NotAcceptable: 406,
    directory_errors.NotWorking: 403,
    directory_errors.StaleVersion: 412,
    directory_errors.InvalidInput: 422,
    directory_errors.InvalidTransition: 409,
    directory_errors.Conflict: 409,
    directory_errors.IdempotencyConflict: 422,
    sync_errors.InvalidWebhookUrl: 422,
    geo_errors.OutsideFrance: 404,
    geo_errors.UnknownTerritory: 404,
    directory_errors.NotFound: 404,
}

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    428: "precondition_required",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this API is rendered."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = list(errors)
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON)


def status_for(exc: Exception) -> int | None:
    """The status an error is answered with (None: unexpected, a 500)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return None


# OGC API – Features answers a query parameter it cannot use, invalid or unknown, with 400 Bad Request
# (Part 1, /req/core/query-param-invalid and /req/core/query-param-unknown) where the rest of this API
# answers 422. The one exception to the table above, by path: every 422 of an operation under /ogc is
# a 400, with the same body and code (`invalid_request`, naming the parameter, never its value).
OGC_PREFIX = "/ogc"


def _for_request(request: Request, status: int) -> int:
    path = get_route_path(request.scope)
    if status == 422 and (path == OGC_PREFIX or path.startswith(OGC_PREFIX + "/")):
        return 400
    return status


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    if status is None:
        return await _unexpected(request, exc)
    return problem_response(
        _for_request(request, status),
        getattr(exc, "code", "error"),
        getattr(exc, "detail", str(exc)),
        headers=getattr(exc, "headers", None),
        errors=_errors_of(exc),
        extra=getattr(exc, "extra", None),
    )


def _errors_of(exc: Exception) -> list[dict[str, Any]] | None:
    """The `errors` member: domain errors name a body field, HTTP ones carry their own entries."""
    field = getattr(exc, "field", None)
    if isinstance(field, str):
        pointer = "/" + field.replace("~", "~0").replace("/", "~1")
        return [{"in": "body", "pointer": pointer, "message": getattr(exc, "message", str(exc))}]
    return getattr(exc, "errors", None)


# A member name is echoed only when it looks like one of ours (an identifier): a caller's own text —
# a name, a phone number typed as a key — never comes back in a problem (DESIGN §3, minimisation).
_MEMBER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


def _named(loc: Sequence[Any]) -> tuple[list[str], bool]:
    """The path of an error up to the first part that is not an identifier or an index; and whether
    the path was cut there."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int) or part == "[key]" or _MEMBER.match(str(part)):  # [key]: pydantic's marker
            parts.append(str(part))
        else:
            return parts, True
    return parts, False


def _location(loc: Sequence[Any]) -> dict[str, str]:
    where = str(loc[0]) if loc else "request"
    rest, _ = _named(loc[1:])
    if where == "body":
        return {"in": "body", "pointer": "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in rest)}
    return {"in": where, "name": rest[0] if rest else where}  # the parameter, not an item of a repeated one


NOT_JSON = {"in": "body", "pointer": "/", "message": "the body is not valid JSON"}


def _undecodable_body() -> JSONResponse:
    """One rule for a JSON body that cannot be decoded, whatever the reason: malformed JSON, or bytes
    that are not UTF-8 (RFC 8259 §8.1: JSON exchanged between systems is UTF-8, so such bytes are not
    JSON text at all). Both are the same fault of the caller's input — "the body is not valid JSON" —
    and both are a 422 `invalid_request` pointing at the whole body ("/"), the code of every other
    "fix this input" answer, never FastAPI's bare 400 for the one and 422 for the other. The OAuth token
    endpoint keeps RFC 6749 §5.2's 400 `invalid_request` for any malformed form body, UTF-8 or not."""
    return problem_response(422, "invalid_request", f"/: {NOT_JSON['message']}", errors=[NOT_JSON])


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for error in exc.errors():
        loc = error.get("loc", ())
        if error.get("type") == "json_invalid":
            return _undecodable_body()  # its loc is a character offset, not a member: "/", not "/12"
        entry = _location(loc)
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "value_error":  # our validators' sentence, without pydantic's "Value error, "
            message = str(error.get("ctx", {}).get("error", message))
        if error.get("type") in ("uuid_parsing", "uuid_type"):
            message = "must be a UUID"  # pydantic's own message quotes the offending character
        elif _named(loc[1:])[1]:
            message = "an unexpected member (its name is not repeated here)"
        entry["message"] = message
        errors.append(entry)
    first = errors[0] if errors else {"message": "invalid request"}
    where = first.get("name") or first.get("pointer") or "request"
    return problem_response(
        _for_request(request, 422), "invalid_request", f"{where}: {first['message']}", errors=errors
    )


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@functools.cache
def _path_pattern(path: str) -> re.Pattern[str]:
    return compile_path(path)[0]


def allowed_methods(app: Starlette, path: str) -> list[str]:
    """Every method some route serves at `path`, in a fixed order: the `Allow` of a 405 (RFC 9110
    §15.5.6). Starlette's router names only the first route whose path matches, so a POST to
    /v1/services/{id} would hear `Allow: GET` although PATCH and DELETE exist there. HEAD and OPTIONS
    are listed only where a route serves them (FastAPI's GET routes do not serve HEAD)."""
    methods: set[str] = set()
    for context in iter_route_contexts(app.routes):
        if context.path is not None and context.methods and _path_pattern(str(context.path)).match(path):
            methods |= context.methods
    return sorted(methods, key=lambda m: (_METHOD_ORDER.index(m) if m in _METHOD_ORDER else len(_METHOD_ORDER), m))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        return _undecodable_body()
    code = _CODE_BY_STATUS.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such resource"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        methods = allowed_methods(request.app, get_route_path(request.scope))
        if methods:
            headers["Allow"] = ", ".join(methods)
    return problem_response(exc.status_code, code, detail, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected_error", path=logged_path(request.scope), error_type=type(exc).__name__)
    return problem_response(500, "internal_error", "an unexpected error occurred; it has been logged")


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """Statement timeouts, exhausted pools and lost connections are transient: 503 + Retry-After,
    never a 500 (OWASP API4: the statement timeout is a resource limit)."""
    log.warning("database_unavailable", path=logged_path(request.scope), error_type=type(exc).__name__)
    return problem_response(
        503, "unavailable", "the database is busy or unreachable; retry shortly", headers={"Retry-After": "2"}
    )


def install(app: FastAPI) -> None:
    domain: tuple[type[Exception], ...] = (
        ApiError,
        geo_errors.GeoError,
        directory_errors.DirectoryError,
        sync_errors.SyncError,
    )
    for error_class in domain:
        app.add_exception_handler(error_class, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    transient: tuple[type[Exception], ...] = (DriverOperationalError, SAOperationalError, PoolTimeout)
    for error_class in transient:
        app.add_exception_handler(error_class, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)


PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"  # registered by api.app.document (not a route model)

_CHALLENGE_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "description": 'The challenge: `Bearer realm="maillage"` (RFC 6750, with `error="invalid_token"` when '
            'a token was refused) on API operations, `Basic realm="maillage"` on the token endpoint.',
            "schema": {"type": "string"},
        }
    },
    429: {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entry documenting the problem+json errors a route may return — only as
    `application/problem+json`, as they are served — with their headers. Every route documented with
    it reaches the database (each /v1 route takes a reader connection before anything else), so a 503
    (statement timeout, busy pool, lost connection: `_database_unavailable`) is always included."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 503}):
        entry: dict[str, Any] = {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
        }
        if status in _CHALLENGE_HEADERS:
            entry["headers"] = dict(_CHALLENGE_HEADERS[status])
        responses[status] = entry
    return responses
