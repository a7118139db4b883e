"""Security headers on every answer: no script but the dashboard's own files, no framing by any
other page (clickjacking on Release), no content sniffing, no addresses leaked in Referer; HSTS
when the browser reaches the API over https (directly, or by the trusted proxy's word, read once
api.proxy has named the scheme); no copy in any cache of an answer but the dashboard's files
(invoices, users and figures stayed in the disk cache of a shared AP workstation)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000"


def security_headers(https: bool, path: str) -> dict[str, str]:
    """The headers every answer carries: HSTS over https, and no copy in any cache but of the
    dashboard's own files, which are asked for again each time they are used (their ETag answers
    304): cached by a browser's guess, the script of the release before ran against the API of
    the new one for days after an upgrade."""
    headers = dict(SECURITY_HEADERS)
    if https:
        headers["Strict-Transport-Security"] = HSTS
    headers["Cache-Control"] = "no-cache" if path.startswith("/static/") else "no-store"
    return headers


class SecurityHeaders:
    def __init__(self, app: ASGIApp, served_over_https: bool):
        self.app, self.served_over_https = app, served_over_https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                https = self.served_over_https or scope["scheme"] == "https"
                for name, value in security_headers(https, scope["path"]).items():
                    if name != "Cache-Control" or "cache-control" not in headers:  # a route's own caching stays
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
