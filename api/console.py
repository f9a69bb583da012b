"""The console at /console: the built front end (console/, `make` builds it into console/dist) served by
Maillage itself, so that `make run` needs no other server and no page ever loads from a CDN.

The console is only a client of the public /v1 API: what is served here is files and the few settings
the browser needs to start (which provider to log in with, the theme, when to lock). Nothing here reads
the database or knows who is asking.

Every page carries a strict Content-Security-Policy: scripts and styles from this origin only, network
calls to this origin and to the configured OpenID provider only (and to a configured outside map style,
if an operator chose one), no framing, no referrer. MapLibre builds its worker from a blob: URL, hence
`worker-src blob:`."""

from __future__ import annotations

import mimetypes
import stat
from pathlib import Path
from urllib.parse import urlsplit

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from .settings import Settings

PREFIX = "/console"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def content_security_policy(settings: Settings) -> str:
    outside = " ".join(
        origin for origin in {_origin(settings.console_oidc_issuer), _origin(settings.console_map_style_url)} if origin
    )
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "font-src 'self'",
            f"img-src 'self' data: blob: {_origin(settings.console_map_style_url)}".rstrip(),
            f"connect-src 'self' {outside}".rstrip(),
            "worker-src blob:",
            "child-src blob:",
            "frame-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def _headers(settings: Settings, *, cache: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "geolocation=(), camera=(), microphone=()",
        "Cache-Control": cache,
    }


def browser_config(settings: Settings) -> dict[str, object]:
    """What the console needs to start. The redirect URI is built from the public base URL, never from
    a request's Host header."""
    issuer = settings.console_oidc_issuer.rstrip("/")
    loopback = urlsplit(issuer).hostname in ("127.0.0.1", "localhost", "::1")
    return {
        "theme": settings.console_theme,
        "lock_minutes": settings.console_lock_minutes,
        "map_style_url": settings.console_map_style_url or None,
        "oidc": {
            "issuer": issuer,
            "client_id": settings.console_client_id,
            "redirect_uri": f"{settings.public_base_url}{PREFIX}/callback",
            # Where the provider sends the browser back after "Se déconnecter" ended the session there.
            "post_logout_redirect_uri": f"{settings.public_base_url}{PREFIX}",
            "resource": settings.console_oidc_resource or None,
            # oauth4webapi refuses plain http unless told; only a provider on this machine may use it.
            "allow_http": issuer.startswith("http://") and loopback,
        }
        if issuer
        else None,
    }


class _Assets(StaticFiles):
    """Built files: revalidated on each load (their names do not change between builds), never
    framed, never sniffed."""

    def __init__(self, directory: Path, settings: Settings) -> None:
        super().__init__(directory=directory, check_dir=False)
        self._extra = _headers(settings, cache="no-cache")

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await self._compressed(path, scope) or await super().get_response(path, scope)
        response.headers.update(self._extra)
        response.headers["Vary"] = "Accept-Encoding"
        return response

    async def _compressed(self, path: str, scope: Scope) -> Response | None:
        """The build's gzip copy of a file (console/build.mjs writes them), when the browser takes gzip:
        the bytes counted against the console's size budget are the ones sent."""
        if "gzip" not in Headers(scope=scope).get("accept-encoding", ""):
            return None
        full_path, stat_result = await anyio.to_thread.run_sync(self.lookup_path, f"{path}.gz")
        if stat_result is None or not stat.S_ISREG(stat_result.st_mode):
            return None
        response = self.file_response(full_path, stat_result, scope)
        response.headers["Content-Type"] = _media_type(path)
        if response.status_code == 200:
            response.headers["Content-Encoding"] = "gzip"
        return response


def _media_type(path: str) -> str:
    guessed = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") or guessed.endswith("javascript") else guessed


def mount(app: FastAPI, settings: Settings) -> None:
    """Serve the console when it has been built; without a build, /console says how to make one."""
    root = settings.console_dir
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    page_headers = _headers(settings, cache="no-store")

    def page() -> Response:
        index = root / "index.html"
        if not index.is_file():
            return HTMLResponse(
                "<!doctype html><html lang=fr><title>Maillage</title><p>La console n’est pas construite : "
                "lancez <code>make run</code> (ou <code>make console</code>).</p>",
                status_code=503,
                headers=page_headers,
            )
        html = index.read_text(encoding="utf-8").replace("%THEME%", settings.console_theme)
        return HTMLResponse(html, headers=page_headers)

    # The page and the provider's redirect back: the same document (the code in the URL is read once
    # and replaced at once by /console in the history).
    router.add_api_route("", page, methods=["GET"])
    router.add_api_route("/", page, methods=["GET"])
    router.add_api_route("/callback", page, methods=["GET"])

    @router.get("/config.json")
    def config() -> JSONResponse:
        return JSONResponse(browser_config(settings), headers=page_headers)

    app.include_router(router)
    app.mount(f"{PREFIX}/assets", _Assets(root / "assets", settings), name="console-assets")
