"""Identity bindings (admins): which people of an outside OpenID provider act in Maillage, as what
(directory/identity_bindings.py; api/oidc.py verifies their tokens)."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from directory import identity_bindings
from directory.access import Principal, Role
from directory.errors import InvalidInput
from directory.identity_bindings import IdentityBinding

from ..auth import Allow, AllowWrites
from ..db import SessionDep
from ..errors import problem_responses
from ..etags import documented
from ..links import absolute, follow
from ..oidc import unbindable
from ..schemas import BindingCreate, BindingOut

router = APIRouter(prefix="/v1", tags=["auth"])

Admin = Annotated[Principal, Depends(AllowWrites(Role.admin))]
AdminReader = Annotated[Principal, Depends(Allow(Role.admin))]


def _out(binding: IdentityBinding) -> dict[str, object]:
    return {
        "binding_id": binding.id,
        "issuer": binding.issuer,
        "claim": binding.claim,
        "value": binding.value,
        "role": binding.role,
        "organisation_id": binding.organisation_id,
        "collectivite_code": binding.collectivite_code,
        "created_at": binding.created_at,
        "created_by": binding.created_by,
        "revoked_at": binding.revoked_at,
    }


def _links(binding_id: str) -> dict[str, Any]:
    return {
        "GetBinding": follow("get_identity_binding", "Read the binding again.", binding_id=binding_id),
        "Revoke": follow("revoke_identity_binding", "Revoke it.", binding_id=binding_id),
    }


@router.get("/identity-bindings", response_model=list[BindingOut], responses=problem_responses(401, 403, 422))
async def list_identity_bindings(
    session: SessionDep,
    _: AdminReader,
    issuer: Annotated[str | None, Query(max_length=300, description="Only this provider's.")] = None,
) -> list[dict[str, object]]:
    """Identity bindings, oldest first, revoked ones included (admins)."""
    return [_out(binding) for binding in await identity_bindings.list_(session, issuer=issuer)]


@router.get(
    "/identity-bindings/{binding_id}", response_model=BindingOut, responses=problem_responses(401, 403, 404, 422)
)
async def get_identity_binding(
    session: SessionDep, _: AdminReader, binding_id: Annotated[uuid.UUID, Path()]
) -> dict[str, object]:
    """One identity binding (admins)."""
    return _out(await identity_bindings.get(session, binding_id))


@router.post(
    "/identity-bindings",
    status_code=201,
    response_model=BindingOut,
    responses={
        **documented(201, etag=False, links=_links("$response.body#/binding_id")),
        **problem_responses(401, 403, 409, 413, 422, 429),
    },
)
async def create_identity_binding(
    request: Request, session: SessionDep, admin: Admin, body: BindingCreate, response: Response
) -> dict[str, object]:
    """Bind a value of a configured provider's mapped claim to a role (admins): that provider's people
    whose token carries it act as that role, for that organisation or collectivité. One active binding
    per value; a token whose values name bindings that disagree is refused."""
    refused = unbindable(request.app.state.settings.oidc_issuers, body.issuer, body.claim)
    if refused is not None:
        raise InvalidInput(*refused)
    binding = await identity_bindings.create(
        session,
        issuer=body.issuer,
        claim=body.claim,
        value=body.value,
        role=Role(body.role),
        organisation_id=getattr(body, "organisation_id", None),
        collectivite_code=getattr(body, "collectivite_code", None),
        created_by=admin.subject,
    )
    await session.commit()
    response.headers["Location"] = absolute(f"/v1/identity-bindings/{binding.id}")
    return _out(binding)


@router.post(
    "/identity-bindings/{binding_id}/revoke",
    response_model=BindingOut,
    responses=problem_responses(401, 403, 404, 422, 429),
)
async def revoke_identity_binding(
    session: SessionDep, _: Admin, binding_id: Annotated[uuid.UUID, Path()]
) -> dict[str, object]:
    """Revoke a binding (admins): its people lose that role on their next request."""
    binding = await identity_bindings.revoke(session, binding_id)
    await session.commit()
    return _out(binding)
