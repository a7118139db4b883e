"""Requests from the single-sign-on proxy. Only they may name the user in the trusted headers,
and only their X-Forwarded-For and X-Forwarded-Proto say who the client is and whether it used https.

A request is the proxy's when its peer address is in API_TRUSTED_PROXIES or it carries
API_TRUSTED_PROXY_SECRET in PROXY_SECRET_HEADER. From anyone else those headers are removed
before the app sees them, so a client that reaches the port directly names no one. The proxy's
own copy of an identity header must be the only one: two copies mean a client's got through, and
the request is refused.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from streams.settings import Settings

PROXY_SECRET_HEADER = "X-Invoice-Automation-Proxy-Secret"
FROM_PROXY = "invoice_automation.from_proxy"  # scope key: True when the proxy sent the request
FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto")
_SECRET = PROXY_SECRET_HEADER.lower().encode()


class TrustedProxy:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.networks = trusted_networks(settings)
        secret = settings.api_trusted_proxy_secret
        self.secret = secret.get_secret_value().encode() if secret else None
        self.identity = {header.lower().encode() for header in (settings.api_trusted_user_header,
                                                                settings.api_trusted_role_header) if header}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from_proxy = self._from_proxy(scope)
        headers = [(name, value) for name, value in scope["headers"] if name != _SECRET
                   and (from_proxy or (name not in self.identity and name not in FORWARDED))]
        # In place, as uvicorn's proxy middleware does: the security headers read the scheme named here.
        scope["headers"], scope[FROM_PROXY] = headers, from_proxy
        if from_proxy:
            repeated = sorted(name.decode() for name in self.identity if [n for n, _ in headers].count(name) > 1)
            if repeated:
                response = JSONResponse({"detail": f"the header {repeated[0]} was sent more than once"}, 400)
                return await response(scope, receive, send)
            self._forwarded(scope)
        await self.app(scope, receive, send)

    def _from_proxy(self, scope: Scope) -> bool:
        if self.secret is not None:
            sent = [value for name, value in scope["headers"] if name == _SECRET]
            if len(sent) == 1 and hmac.compare_digest(sent[0], self.secret):
                return True
        return self._is_proxy_address((scope.get("client") or ("",))[0])

    def _is_proxy_address(self, host: str) -> bool:
        address = ip_of(host)
        return address is not None and any(address in network for network in self.networks)

    def _forwarded(self, scope: Scope) -> None:
        """The client is the nearest address in X-Forwarded-For that is not a proxy of ours: the
        ones further left were written by the client itself."""
        chain = [hop.strip() for name, value in scope["headers"] if name == b"x-forwarded-for"
                 for hop in value.decode("latin-1").split(",") if hop.strip()]
        client = next((hop for hop in reversed(chain) if not self._is_proxy_address(hop)), None)
        if client is not None:
            address = ip_of(client)  # as one address is written one way, whatever the proxy wrote
            scope["client"] = (str(address) if address is not None else client[:100], 0)
        protos = [value.decode("latin-1").strip().lower() for name, value in scope["headers"]
                  if name == b"x-forwarded-proto"]
        if protos and protos[-1] in ("http", "https"):
            scope["scheme"] = protos[-1]


def trusted_networks(settings: Settings) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """API_TRUSTED_PROXIES as networks, whatever they arrived as (a copied Settings keeps the
    strings it was given)."""
    return [ipaddress.ip_network(str(network), strict=False) for network in settings.api_trusted_proxies]


def ip_of(hop: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in a hop as proxies write it: 203.0.113.7, 203.0.113.7:40000 (with the port),
    2001:db8::1, [2001:db8::1]:443, ::ffff:203.0.113.7 (IPv4 as IPv6); None for what is none."""
    text = hop.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
