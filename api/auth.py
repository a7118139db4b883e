"""Who is calling: the RPA bot by bearer token; AP people by a signed session cookie (the /login
form), HTTP Basic (API clients) or a header set by a trusted single-sign-on proxy.

A viewer reads; a clerk may also release invoices and send them to the RPA bot.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from itsdangerous import BadSignature, URLSafeTimedSerializer

from api.errors import ApiProblem
from streams.settings import Settings

SESSION_COOKIE = "ia_session"
# Sent by the dashboard's own scripts: a cross-site form cannot set it, so cookie-signed
# changes without it are refused (CSRF), and 401s without a Basic challenge keep the
# browser from popping up its password dialog.
DASHBOARD_HEADER = "X-Requested-With"

bearer_scheme = HTTPBearer(auto_error=False, description="The RPA bot's token (INVOICE_AUTOMATION_API_TOKEN).")
basic_scheme = HTTPBasic(auto_error=False, description="An AP user from INVOICE_AUTOMATION_API_USERS.")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Set by POST /login.")


class Role(StrEnum):
    VIEWER = "viewer"
    CLERK = "clerk"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    by_cookie: bool = False


def hash_password(password: str) -> str:
    return PasswordHasher().hash(password)


class Authenticator:
    def __init__(self, settings: Settings):
        self.hasher = PasswordHasher()
        self.users = {user.name: user for user in settings.api_users}
        self.token = settings.api_token.get_secret_value().encode() if settings.api_token else None
        self.trusted_user_header = settings.api_trusted_user_header
        self.trusted_role_header = settings.api_trusted_role_header
        self.trusted_default_role = Role(settings.api_trusted_default_role)
        secret = settings.api_session_secret.get_secret_value() if settings.api_session_secret else secrets.token_hex(32)
        self.sessions = URLSafeTimedSerializer(secret, salt="invoice-automation-session")
        self.max_age = settings.api_session_max_age_seconds
        self._dummy_hash = self.hasher.hash(secrets.token_hex(8))

    def check_password(self, name: str, password: str) -> Principal | None:
        """Takes as long for an unknown name as for a wrong password."""
        user = self.users.get(name)
        try:
            self.hasher.verify(user.password_hash if user else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return Principal(user.name, Role(user.role)) if user else None

    def session_for(self, principal: Principal) -> str:
        return self.sessions.dumps({"name": principal.name, "role": principal.role.value})

    def from_session(self, cookie: str) -> Principal | None:
        try:
            data = self.sessions.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        user = self.users.get(data.get("name"))  # a user removed from the settings is signed out
        return Principal(user.name, Role(user.role), by_cookie=True) if user else None

    def from_trusted_headers(self, request: Request) -> Principal | None:
        if not self.trusted_user_header or not request.headers.get(self.trusted_user_header):
            return None
        role = request.headers.get(self.trusted_role_header, "") if self.trusted_role_header else ""
        return Principal(request.headers[self.trusted_user_header],
                         Role(role) if role in Role._value2member_map_ else self.trusted_default_role)

    def token_matches(self, presented: str) -> bool:
        return self.token is not None and hmac.compare_digest(presented.encode(), self.token)


def _authenticator(request: Request) -> Authenticator:
    return request.app.state.context.auth


def _unauthorized(request: Request, detail: str) -> ApiProblem:
    challenge = "Session" if request.headers.get(DASHBOARD_HEADER) else 'Basic realm="invoice-automation"'
    return ApiProblem(401, detail, headers={"WWW-Authenticate": challenge})


def signed_in(
    request: Request,
    basic: HTTPBasicCredentials | None = Depends(basic_scheme),
    cookie: str | None = Depends(cookie_scheme),
) -> Principal:
    auth = _authenticator(request)
    principal = auth.from_trusted_headers(request)
    if principal is None and basic is not None:
        principal = auth.check_password(basic.username, basic.password)
        if principal is None:
            raise _unauthorized(request, "wrong user name or password")
    if principal is None and cookie:
        principal = auth.from_session(cookie)
    if principal is None:
        raise _unauthorized(request, "sign in first: POST /login, or HTTP Basic")
    return principal


def clerk(request: Request, principal: Principal = Depends(signed_in)) -> Principal:
    if principal.role is not Role.CLERK:
        raise ApiProblem(403, f"{principal.name} is a {principal.role.value}; only a clerk may do this")
    if principal.by_cookie and not request.headers.get(DASHBOARD_HEADER):
        raise ApiProblem(403, f"a signed-in change needs the {DASHBOARD_HEADER} header (CSRF protection)")
    return principal


def rpa_bot(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> None:
    if bearer is None or not _authenticator(request).token_matches(bearer.credentials):
        raise ApiProblem(401, "the RPA callbacks need the bearer token from INVOICE_AUTOMATION_API_TOKEN",
                         headers={"WWW-Authenticate": "Bearer"})
