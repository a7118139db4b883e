"""What the API refuses to start with. No secret has a default: a token or session secret that
anyone could know (a sample value, a short or repetitive word) is as bad as none, since with the
session secret a clerk's cookie can be forged offline."""

from __future__ import annotations

from pydantic import SecretStr

from api.proxy import trusted_networks
from streams.settings import HOW_TO_MAKE_ONE, MIN_SECRET_LENGTH, Settings, guessable

# The widest network a proxy's addresses may be given as, by IP version: 10.0.0.0/8, 2001::/16.
WIDEST_PROXY_RANGE = {4: 8, 6: 16}


class ApiMisconfigured(RuntimeError):
    """The settings would leave the API open; the message lists every problem."""


def _weak(name: str, secret: SecretStr | None, required: bool) -> list[str]:
    setting = f"INVOICE_AUTOMATION_{name.upper()}"
    if secret is None:
        return [f"{setting} is not set ({HOW_TO_MAKE_ONE})"] if required else []
    value = secret.get_secret_value()
    if guessable(value):
        return [f"{setting} is too easy to guess: at least {MIN_SECRET_LENGTH} random characters ({HOW_TO_MAKE_ONE})"]
    return []


def refusals(settings: Settings) -> list[str]:
    problems = [*_weak("api_token", settings.api_token, required=True),
                *_weak("api_session_secret", settings.api_session_secret, required=True),
                *_weak("api_metrics_token", settings.api_metrics_token, required=False),
                *_weak("api_trusted_proxy_secret", settings.api_trusted_proxy_secret, required=False)]
    if settings.api_trusted_user_header and not (settings.api_trusted_proxies or settings.api_trusted_proxy_secret):
        problems.append("INVOICE_AUTOMATION_API_TRUSTED_USER_HEADER is set, but neither API_TRUSTED_PROXIES nor "
                        "API_TRUSTED_PROXY_SECRET says which requests come from the proxy: anyone could name a user")
    if wide := [str(net) for net in trusted_networks(settings) if net.prefixlen < WIDEST_PROXY_RANGE[net.version]]:
        problems.append(f"INVOICE_AUTOMATION_API_TRUSTED_PROXIES holds {', '.join(wide)}: wider than any proxy's "
                        "addresses, it takes whoever connects from there for the proxy, whose X-Forwarded-For "
                        "the sign-in throttle believes (and whose user headers, with API_TRUSTED_USER_HEADER)")
    return problems


def check(settings: Settings) -> None:
    problems = refusals(settings)
    if problems:
        raise ApiMisconfigured("the API does not start: " + "; ".join(problems))
