"""API clients of partner systems (admins), and the OAuth 2.0 token endpoint (client credentials)."""

import base64
import binascii
import uuid
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from directory import clients
from directory.access import Principal, Role
from directory.models import ApiClient, Organisation

from ..auth import Allow, AllowWrites, Public
from ..db import ReaderDep, SessionDep
from ..errors import ApiError, problem_response, problem_responses
from ..etags import documented
from ..links import absolute, follow
from ..schemas import ClientCreate, ClientOut, ClientSecret, TokenOut

router = APIRouter(prefix="/v1", tags=["auth"])

Admin = Annotated[Principal, Depends(AllowWrites(Role.admin))]
AdminReader = Annotated[Principal, Depends(Allow(Role.admin))]

# A response that carries a secret must not be stored by any cache (RFC 9111 §5.2.2.5; RFC 6749 §5.1
# for the token endpoint; Pragma for HTTP/1.0 caches).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _out(client: ApiClient, secret: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "client_id": client.id,
        "name": client.name,
        "role": client.role,
        "organisation_id": client.organisation_id,
        "collectivite_code": client.collectivite_code,
        "created_at": client.created_at,
        "rotated_at": client.rotated_at,
        "revoked_at": client.revoked_at,
        "last_used_at": client.last_used_at,
    }
    if secret is not None:
        body["client_secret"] = secret
    return body


@router.get("/clients", response_model=list[ClientOut], responses=problem_responses(401, 403, 422))
async def list_clients(
    session: SessionDep,
    _: AdminReader,
    organisation_id: Annotated[uuid.UUID | None, Query(description="Only this organisation's clients.")] = None,
) -> list[dict[str, object]]:
    """API clients, oldest first (admins). Secrets are never shown again."""
    return [_out(client) for client in await clients.list_(session, organisation_id=organisation_id)]


def _client_links(client_id: str) -> dict[str, Any]:
    return {
        "GetClient": follow("get_client", "Read the client again.", client_id=client_id),
        "Rotate": follow("rotate_client", "Issue a new secret.", client_id=client_id),
        "Revoke": follow("revoke_client", "Revoke it.", client_id=client_id),
    }


@router.get("/clients/{client_id}", response_model=ClientOut, responses=problem_responses(401, 403, 404, 422))
async def get_client(session: SessionDep, _: AdminReader, client_id: Annotated[uuid.UUID, Path()]) -> dict[str, object]:
    """One API client (admins). Its secret is never shown again."""
    return _out(await clients.get(session, client_id))


@router.post(
    "/clients",
    status_code=201,
    response_model=ClientSecret,
    responses={
        **documented(201, etag=False, links=_client_links("$response.body#/client_id")),
        **problem_responses(401, 403, 413, 422, 429),
    },
)
async def create_client(session: SessionDep, _: Admin, body: ClientCreate, response: Response) -> dict[str, object]:
    """Register an API client (admins). The secret is in this response only: hand it over safely."""
    response.headers.update(NO_STORE)
    issued = await clients.create(
        session,
        name=body.name,
        role=Role(body.role),
        organisation_id=getattr(body, "organisation_id", None),
        collectivite_code=getattr(body, "collectivite_code", None),
    )
    await session.commit()
    response.headers["Location"] = absolute(f"/v1/clients/{issued.client.id}")
    return _out(issued.client, issued.secret)


@router.post(
    "/clients/{client_id}/rotate",
    response_model=ClientSecret,
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
async def rotate_client(
    session: SessionDep, _: Admin, client_id: Annotated[uuid.UUID, Path()], response: Response
) -> dict[str, object]:
    """Issue a new secret (admins); the old one stops working at once."""
    response.headers.update(NO_STORE)
    issued = await clients.rotate(session, client_id)
    await session.commit()
    return _out(issued.client, issued.secret)


@router.post(
    "/clients/{client_id}/revoke", response_model=ClientOut, responses=problem_responses(401, 403, 404, 422, 429)
)
async def revoke_client(session: SessionDep, _: Admin, client_id: Annotated[uuid.UUID, Path()]) -> dict[str, object]:
    """Revoke a client (admins): no new tokens, and its current tokens can no longer write."""
    client = await clients.revoke(session, client_id)
    await session.commit()
    return _out(client)


class OAuthError(ApiError):
    """RFC 6749 §5.2 errors, rendered as problem+json that also carries `error` for OAuth libraries."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error = status, error


def _oauth_problem(exc: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="maillage"'
    return problem_response(
        exc.status, exc.error, exc.detail, headers=headers, extra={"error": exc.error, "error_description": exc.detail}
    )


def _credentials(request: Request, form: dict[str, list[str]]) -> tuple[str, str]:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError(401, "invalid_client", "authenticate with HTTP Basic (client_id:client_secret)")
        try:
            client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise OAuthError(401, "invalid_client", "malformed Basic credentials") from exc
        return client_id, secret
    ids, secrets = form.get("client_id", []), form.get("client_secret", [])
    if len(ids) != 1 or len(secrets) != 1:
        raise OAuthError(401, "invalid_client", "client authentication failed")
    return ids[0], secrets[0]


@router.post(
    "/auth/token",
    response_model=TokenOut,
    responses=problem_responses(400, 401, 413, 429),
    dependencies=[Depends(Public())],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def issue_token(request: Request, session: SessionDep, conn: ReaderDep) -> JSONResponse:
    """OAuth 2.0 client-credentials grant (RFC 6749 §4.4): a partner system trades its client id and
    secret (HTTP Basic, or form fields) for an access token valid 15 minutes."""
    try:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            raise OAuthError(400, "invalid_request", "send application/x-www-form-urlencoded")
        try:
            form = parse_qs((await request.body()).decode(), strict_parsing=True, max_num_fields=10)
        except (ValueError, UnicodeDecodeError) as exc:
            raise OAuthError(400, "invalid_request", "malformed form body") from exc
        if len(form.get("grant_type", [])) != 1:
            raise OAuthError(400, "invalid_request", "grant_type is required, once")
        if form["grant_type"] != ["client_credentials"]:
            raise OAuthError(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
        raw_id, secret = _credentials(request, form)
        try:
            client_id = uuid.UUID(raw_id)
        except ValueError as exc:  # before the limiter: it counts client ids, not whatever was sent
            raise OAuthError(401, "invalid_client", "client authentication failed") from exc
        await request.app.state.token_limiter.hit(conn, str(client_id))
        client = await clients.authenticate(session, client_id, secret[:200])
        if client is None or (client.role is Role.partner and not await _organisation_active(session, client)):
            raise OAuthError(401, "invalid_client", "client authentication failed")
        token = request.app.state.tokens.issue(
            subject=str(client.id),
            role=client.role,
            organisation_id=client.organisation_id,
            collectivite_code=client.collectivite_code,
            client_id=client.id,
        )
        await session.commit()
    except OAuthError as exc:
        return _oauth_problem(exc)
    expires_in = request.app.state.tokens.max_ttl
    return JSONResponse(
        {"access_token": token, "token_type": "Bearer", "expires_in": expires_in},
        headers=NO_STORE,
    )


async def _organisation_active(session: SessionDep, client: ApiClient) -> bool:
    organisation = await session.get(Organisation, client.organisation_id)
    return organisation is not None and organisation.deactivated_at is None
