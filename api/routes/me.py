"""Who the caller is, as the API sees them: what a client (the people's console) reads to choose what
to show, rather than decoding a token it should treat as opaque."""

from fastapi import APIRouter

from directory import access

from ..auth import AnyRole
from ..db import ReaderDep
from ..errors import problem_responses
from ..responses import JSONText
from ..schemas import Me

router = APIRouter(prefix="/v1", tags=["auth"])


@router.get("/me", response_model=Me, responses=problem_responses(401, 403))
async def get_me(principal: AnyRole, conn: ReaderDep) -> JSONText:
    """The caller's role, the organisation they act for and the collectivité whose statistics they read,
    as this API sees them once their token is verified — and, for a person of an outside identity
    provider, once an identity binding names them (403 `identity_not_bound` while none does).

    `organisation` is a partner's own (with `active` false once an administrator deactivated it) or the
    119 unit for specialists; `collectivite` a department's. Nothing else: no subject, issuer or claim.
    """
    return JSONText(await access.acting_as(conn, principal))
