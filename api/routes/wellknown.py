"""Public key discovery, so partners can verify the tokens this API issues."""

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(tags=["auth"])


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> dict[str, Any]:
    """The public keys (JWK Set) that verify access tokens, by `kid`."""
    return request.app.state.tokens.keys.jwks()
