"""Changes only from this site's own pages, whatever the authentication: a browser sends a
session cookie, HTTP Basic credentials and a single-sign-on proxy's cookie along with a request
that another site's page makes, so none of them alone shows that the person meant it.

Browsers say where a request comes from: Sec-Fetch-Site (every current browser) or, before it,
Origin. A change that a browser marks as from another site, or from an origin that is neither
this one nor in API_ALLOWED_ORIGINS, is refused (403). A request with neither header does not
come from a web page (the RPA bot, curl, API clients) and cannot be forged by one.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
THIS_SITE = {"same-origin", "none"}  # "none": the person typed or bookmarked the address


class CrossSiteRefusal:
    def __init__(self, app: ASGIApp, allowed_origins: list[str]):
        self.app = app
        self.allowed_origins = {origin.rstrip("/").lower() for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            refused = self._refusal(scope)
            if refused:
                return await JSONResponse({"detail": refused}, status_code=403)(scope, receive, send)
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        origins = headers.getlist("origin")
        origin = origins[0].lower() if len(origins) == 1 else None
        allowed = origin is not None and origin in self.allowed_origins | {_own_origin(scope, headers)}
        sites = headers.getlist("sec-fetch-site")
        if sites:
            if (len(sites) == 1 and sites[0] in THIS_SITE) or allowed:
                return None
            return f"a change sent from another site's page (Sec-Fetch-Site: {', '.join(sites)[:40]}) is refused"
        if not origins or allowed:
            return None
        return "a change sent from another origin is refused (set INVOICE_AUTOMATION_API_ALLOWED_ORIGINS to allow one)"


def _own_origin(scope: Scope, headers: Headers) -> str:
    return f"{scope['scheme']}://{headers.get('host', '')}".lower()
