"""Who is calling: the RPA bot by bearer token; AP people by a signed session cookie (the /login
form), HTTP Basic (API clients) or headers from the trusted single-sign-on proxy (api/proxy.py).

Who is calling is settled once per request from its headers alone (`identify`), and routes that
take a body settle it before FastAPI reads a byte of that body (`SignedInFirst`, `RpaBotFirst`):
a request without valid credentials costs a header parse, never a parsed upload. The
dependencies `signed_in`, `clerk` and `rpa_bot` then say whether that caller may use the route.

A viewer reads; a clerk may also release invoices and send them to the RPA bot.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from itsdangerous import BadSignature, URLSafeTimedSerializer
from prometheus_client import CollectorRegistry, Counter
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from api.errors import ApiProblem, unreadable_json
from api.proxy import FROM_PROXY
from api.throttle import SignInThrottle, address_key
from connectors.api_ports import SessionVersions
from rules.limits import control_character
from streams.settings import MAX_USER_NAME, ApiUser, Settings

log = logging.getLogger(__name__)
BASIC_KEPT_SECONDS = 60  # an HTTP Basic password that passed is taken again without argon2 this long
BASIC_KEPT = 1_000  # such passwords (as keyed digests) at most
KNOWN_ADDRESSES = 16  # per user: the addresses (IPv6: /64s) it last signed in from
SESSION_COOKIE = "ia_session"
# Sent by the dashboard's own scripts: a cross-site form cannot set it, so cookie-signed
# changes without it are refused (CSRF, beside api/cross_site.py), and 401s without a Basic
# challenge keep the browser from popping up its password dialog.
DASHBOARD_HEADER = "X-Requested-With"
CALLER = "invoice_automation.caller"  # scope key: who `identify` found

bearer_scheme = HTTPBearer(auto_error=False, description="The RPA bot's token (INVOICE_AUTOMATION_API_TOKEN).")
class _Utf8Basic(HTTPBasic):
    """HTTP Basic as RFC 7617 reads it with charset="UTF-8" (curl, browsers and requests send
    UTF-8): FastAPI's reads ASCII only, and refused "Dvořák" or an accented password before any
    check. Bytes that are not UTF-8 are read as Latin-1, as older clients send them."""

    async def __call__(self, request: HTTPConnection) -> HTTPBasicCredentials | None:  # type: ignore[override]
        scheme, param = get_authorization_scheme_param(request.headers.get("Authorization"))
        if scheme.lower() != "basic":
            return None
        try:
            raw = base64.b64decode(param)  # as leniently as FastAPI's (extra padding, spaces)
        except ValueError:  # binascii.Error, and text that is not ASCII (a 500 before)
            raise self.make_not_authenticated_error() from None
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        username, separator, password = text.partition(":")
        if not separator:
            raise self.make_not_authenticated_error()
        return HTTPBasicCredentials(username=username, password=password)

    def make_authenticate_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": BASIC_CHALLENGE}


BASIC_CHALLENGE = 'Basic realm="invoice-automation", charset="UTF-8"'
basic_scheme = _Utf8Basic(auto_error=False, description="An AP user from INVOICE_AUTOMATION_API_USERS.")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Set by POST /login.")


class Role(StrEnum):
    VIEWER = "viewer"
    CLERK = "clerk"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    session_version: int | None = None  # set when signed in by the session cookie
    session_ends: float | None = None  # when that cookie stops being taken (Unix time)

    @property
    def by_cookie(self) -> bool:
        return self.session_version is not None


@dataclass(frozen=True)
class RpaBot:
    """The caller that presented INVOICE_AUTOMATION_API_TOKEN."""


RPA_BOT = RpaBot()


class SignInRefused(Exception):
    def __init__(self, status: int, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(math.ceil(self.retry_after))} if self.retry_after else {}


def hash_password(password: str) -> str:
    return PasswordHasher().hash(password)


def client_address(request: Request) -> str:
    """The peer, or the client a trusted proxy named (api/proxy.py)."""
    return request.client.host if request.client else "unknown"


class Authenticator:
    def __init__(self, settings: Settings, sessions: SessionVersions, registry: CollectorRegistry):
        assert settings.api_token and settings.api_session_secret, "api.startup.check refuses to start without them"
        self.hasher = PasswordHasher()
        self.users = {user.name: user for user in settings.api_users}
        self.token = settings.api_token.get_secret_value().encode()
        metrics_token = settings.api_metrics_token
        self.metrics_token = metrics_token.get_secret_value().encode() if metrics_token else None
        self.trusted_user_header = settings.api_trusted_user_header
        self.trusted_role_header = settings.api_trusted_role_header
        self.trusted_default_role = Role(settings.api_trusted_default_role)
        self.session_secret = settings.api_session_secret.get_secret_value().encode()
        self.cookies = URLSafeTimedSerializer(self.session_secret, salt="invoice-automation-session")
        self.max_age = settings.api_session_max_age_seconds
        self.secure_cookies = settings.api_served_over_https
        self.sessions = sessions
        self.throttle = SignInThrottle(settings.api_sign_in_free_failures, settings.api_sign_in_backoff_seconds,
                                       settings.api_sign_in_backoff_max_seconds)
        # Each argon2 check holds 64 MiB: a flood of sign-ins waits here instead of filling memory.
        self.checks_at_once = asyncio.Semaphore(settings.api_password_checks_at_once)
        # A stranger's check takes one of these first, one fewer (one at least): `_password_check`.
        self.strangers_checks_at_once = asyncio.Semaphore(max(settings.api_password_checks_at_once - 1, 1))
        self.check_wait = settings.api_password_check_wait_seconds
        self.failures = Counter("invoice_automation_api_sign_in_failures", "Sign-ins refused, by why",
                                labelnames=["reason"], registry=registry)
        self._dummy_hash = self.hasher.hash(secrets.token_hex(8))
        self._basic_passed: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._signed_in_from: dict[str, OrderedDict[str, None]] = {}  # user -> addresses it signed in from

    def _verify(self, name: str, password: str) -> Principal | None:
        """Takes as long for an unknown name as for a wrong password."""
        user = self.users.get(name)
        try:
            self.hasher.verify(user.password_hash if user else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return Principal(user.name, Role(user.role)) if user else None

    async def check_password(self, name: str, password: str, address: str) -> Principal:
        """The user, or SignInRefused: 401 wrong, 429 too many failures, 503 too many checks at once."""
        held, counted = self._throttle_keys(name, address)
        self._refuse_if_throttled(held)
        async with self._password_check(stranger=not self._signed_in_here(name, address)):
            # Again: a burst sent at once all passed the first look before any of its failures counted.
            self._refuse_if_throttled(held)
            principal = await run_in_threadpool(self._verify, name, password)
        if principal is None:
            # The keys again: a sign-in meanwhile may have pushed this address out of the user's last
            # 16, and a count at an address no longer known would be kept for good.
            counted = self._throttle_keys(name, address)[1]
            # From an address the user signed in from, a wrong password while the user's count over
            # all addresses holds back everyone else is answered as everyone else: a 401 there, where
            # a name no one has got a 429, told a guesser behind the NAT which names sign in there.
            everywhere = self.throttle.wait_for(counted[1]) if counted[1] not in held else 0.0
            self.throttle.failed(*counted)
            self.failures.labels("wrong_password").inc()
            log.warning("sign-in failed: user %r from %s", name[:100], address)  # never the password
            if everywhere:
                raise _throttled(everywhere)
            raise SignInRefused(401, "wrong user name or password")
        # The count that held this sign-in back, the user's own: from an address the user signed in
        # from, the user's count there (cleared there, the user's count over all addresses, which
        # holds back guesses from ever new ones, went back to zero at each of the user's sign-ins).
        self.throttle.succeeded(counted[-1])
        addresses = self._signed_in_from.setdefault(name, OrderedDict())
        addresses[counted[0]] = None
        addresses.move_to_end(counted[0])
        if len(addresses) > KNOWN_ADDRESSES:
            gone, _ = addresses.popitem(last=False)
            self.throttle.succeeded(f"user:{name}@{gone}")  # kept for good otherwise: a count per /64 tried
        return principal

    @asynccontextmanager
    async def _password_check(self, stranger: bool) -> AsyncIterator[None]:
        """One of the argon2 checks at once, or SignInRefused 503 past API_PASSWORD_CHECK_WAIT_SECONDS.

        A stranger (a user's name tried from an address it never signed in from, a name no one has)
        takes one of `strangers_checks_at_once` first, one fewer than the checks (one at least): a
        check stays for a user at an address it signed in from (with a single check, the user waits
        behind one stranger at most, not behind all who wait). Guesses at ever new names from ever new /64s pass the
        throttle for a good while (each address and each of the 4,096 buckets of names no one has
        has its free failures): they kept every check busy, and the clerk at her usual desk, right
        password and all, waited 5 s for a 503.

        What this tells an outsider: the lane is the throttle's own choice (`_throttle_keys`), by
        name and address together. From an address no user signed in from, a user's name and a name
        no one has wait in the same lane and are checked alike, so their answers and times tell
        nothing of which names exist. Who shares an address a user signed in from (an office's NAT)
        can tell, flooding from elsewhere meanwhile, which names signed in from there (checked, where
        the others wait to a 503), as the throttle's answers there tell him already. What the buckets
        do not hide: failing with enough names no one has to hold every bucket (5 failures each,
        some 20,000 checks in the strangers' lane) leaves a user's name tried from a fresh address
        the only one still checked (401 against 429); the buckets make that list cost those checks."""
        lanes = (self.strangers_checks_at_once, self.checks_at_once) if stranger else (self.checks_at_once,)
        async with AsyncExitStack() as taken:
            try:
                async with asyncio.timeout(self.check_wait):
                    for slots in lanes:
                        await slots.acquire()
                        taken.callback(slots.release)
            except TimeoutError:
                self.failures.labels("busy").inc()
                raise SignInRefused(503, "too many sign-ins at once: try again shortly", retry_after=1) from None
            yield

    def _throttle_keys(self, name: str, address: str) -> tuple[list[str], list[str]]:
        """The counts that hold a sign-in back, and those its failure adds to (the address first).
        A name no one has is counted too, as the users are (`_unknown_name_key`): left uncounted,
        its refusals never turned to 429, and told a guesser which names exist.
        From an address the user signed in from before, only the user's count at that address holds
        it back: the user's count over all addresses held the clerk out when a stranger guessed wrong
        at her name, and the address's count when a script behind the office's NAT kept trying a
        stale password for another name (900 s waits, all day). The address's count still holds
        every name never signed in from there, and a failure there still adds to it. So someone
        behind the same NAT, once the address is held, can tell the names signed in from there (a
        wrong password is a 401 for them, a 429 for the others): the price of not holding the clerk
        back with him. The user's count there starts "user:" too, so no flood of guesses from elsewhere
        pushes it out."""
        where = address_key(address)
        user = f"user:{name}" if name in self.users else _unknown_name_key(name, self.session_secret)
        if not self._signed_in_here(name, address):
            return [where, user], [where, user]
        there = f"user:{name}@{where}"
        return [there], [where, user, there]

    def _signed_in_here(self, name: str, address: str) -> bool:
        """Has the user signed in from this address (an IPv6 /64) before, among its last 16?"""
        return address_key(address) in self._signed_in_from.get(name, ())

    async def check_basic(self, name: str, password: str, address: str) -> Principal:
        """HTTP Basic sends the password with every request: each was an argon2 check (86 ms, 64 MiB)
        in the slots sign-ins wait for, and one client's steady requests made everyone's sign-in a
        503. A password that passed is taken again for a minute, by a keyed digest (never itself)."""
        digest = hmac.new(self.session_secret, f"{name}\0{password}".encode(errors="surrogatepass"),
                          hashlib.sha256).digest()
        now = time.monotonic()
        passed = self._basic_passed.get(digest)
        if passed is not None and now < passed[1]:
            self._refuse_if_throttled(self._throttle_keys(name, address)[0])  # held back, it may not pass
            return passed[0]
        principal = await self.check_password(name, password, address)
        self._basic_passed[digest] = (principal, now + BASIC_KEPT_SECONDS)
        self._basic_passed.move_to_end(digest)
        if len(self._basic_passed) > BASIC_KEPT:
            self._basic_passed.popitem(last=False)
        return principal

    def _refuse_if_throttled(self, keys: list[str]) -> None:
        if wait := self.throttle.wait_for(*keys):
            self.failures.labels("throttled").inc()
            raise _throttled(wait)

    def _fingerprint(self, user: ApiUser) -> str:
        """Changes with the password hash, so a new password ends the sessions signed before it."""
        return hmac.new(self.session_secret, user.password_hash.encode(), hashlib.sha256).hexdigest()[:32]

    def session_for(self, principal: Principal) -> str:
        """Blocking: reads the session version."""
        user = self.users[principal.name]
        return self.cookies.dumps({"name": user.name, "v": self.sessions.current(user.name),
                                   "p": self._fingerprint(user)})

    def from_session(self, cookie: str) -> Principal | None:
        """Blocking: reads the session version. None for a forged, expired or ended session, and for
        a user removed from the settings or given a new password since."""
        try:
            data, signed_at = self.cookies.loads(cookie, max_age=self.max_age, return_timestamp=True)
        except BadSignature:
            return None
        named = isinstance(data, dict) and isinstance(data.get("name"), str)
        user = self.users.get(data["name"]) if named else None
        if user is None or not hmac.compare_digest(str(data.get("p")), self._fingerprint(user)):
            return None
        version = data.get("v")
        if version != self.sessions.current(user.name):
            return None
        return Principal(user.name, Role(user.role), session_version=version,
                         session_ends=signed_at.timestamp() + self.max_age)

    def still_signed_in(self, principal: Principal) -> bool:
        """Blocking. For a stream that outlives its request: has the session ended since, signed
        out or expired? (itsdangerous's clock, as the cookie's.)"""
        if principal.session_ends is not None and time.time() >= principal.session_ends:
            return False
        return not principal.by_cookie or self.sessions.current(principal.name) == principal.session_version

    def from_trusted_headers(self, request: Request) -> Principal | None:
        if not self.trusted_user_header or not request.scope.get(FROM_PROXY):
            return None
        sent = request.headers.get(self.trusted_user_header)
        if not sent:
            return None
        try:  # Starlette reads header bytes as latin-1; proxies send a name such as Dvořák in UTF-8
            name = sent.encode("latin-1").decode("utf-8")
        except UnicodeError:
            name = sent
        if len(name) > MAX_USER_NAME or control_character(name):  # a history's actor could not hold it
            log.warning("the proxy's %s is not a user name (%d characters): not signed in",
                        self.trusted_user_header, len(name))
            return None
        role = request.headers.get(self.trusted_role_header, "") if self.trusted_role_header else ""
        return Principal(name, Role(role) if role in Role._value2member_map_ else self.trusted_default_role)

    def token_matches(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.token)

    def metrics_token_matches(self, presented: str | None) -> bool:
        return self.metrics_token is None or (
            presented is not None and hmac.compare_digest(presented.encode(), self.metrics_token))


def _throttled(wait: float) -> SignInRefused:
    return SignInRefused(429, f"too many failed sign-ins: try again in {math.ceil(wait)} s", retry_after=wait)


UNKNOWN_NAME_BUCKETS = 4_096


def _unknown_name_key(name: str, secret: bytes) -> str:
    """A name no one has is counted in one of a fixed number of buckets, which no flood of guesses
    pushes out as it did the name's own count: the name answered 401 again after a flood where a
    user's name stayed 429, and told which names exist. Keyed, so no one picks the buckets."""
    digest = hmac.new(secret, name.encode(errors="surrogatepass"), hashlib.sha256).digest()
    return f"user:?{int.from_bytes(digest[:4], 'big') % UNKNOWN_NAME_BUCKETS}"


def _authenticator(request: Request) -> Authenticator:
    return request.app.state.context.auth


def _unauthorized(request: Request, detail: str, headers: dict[str, str] | None = None) -> ApiProblem:
    # The live feed's EventSource cannot send the header: its 401 at a session's end had the browser
    # ask for a password, which it then kept for /api/ past any sign-out (a shared AP workstation).
    from_page = request.headers.get(DASHBOARD_HEADER) or "text/event-stream" in request.headers.get("Accept", "")
    challenge = "Session" if from_page else BASIC_CHALLENGE
    return ApiProblem(401, detail, headers={"WWW-Authenticate": challenge, **(headers or {})})


def _refused(request: Request, refused: SignInRefused) -> ApiProblem:
    if refused.status == 401:
        return _unauthorized(request, refused.detail)
    return ApiProblem(refused.status, refused.detail, headers=refused.headers)


async def _caller(auth: Authenticator, request: Request) -> Principal | RpaBot | None:
    trusted = auth.from_trusted_headers(request)
    if trusted is not None:
        return trusted
    bearer = await bearer_scheme(request)
    if bearer is not None:
        if auth.token_matches(bearer.credentials):
            return RPA_BOT
        raise ApiProblem(401, "the bearer token is not INVOICE_AUTOMATION_API_TOKEN",
                         headers={"WWW-Authenticate": "Bearer"})
    basic = await basic_scheme(request)
    if basic is not None:
        try:
            return await auth.check_basic(basic.username, basic.password, client_address(request))
        except SignInRefused as refused:
            raise _refused(request, refused) from None
    cookie = request.cookies.get(SESSION_COOKIE)
    return await run_in_threadpool(auth.from_session, cookie) if cookie else None


async def identify(request: Request) -> Principal | RpaBot | None:
    """Who sent the request, from its headers; once per request however many gates ask."""
    if CALLER not in request.scope:
        request.scope[CALLER] = await _caller(_authenticator(request), request)
    return request.scope[CALLER]


async def person(request: Request) -> Principal:
    caller = await identify(request)
    if not isinstance(caller, Principal):
        raise _unauthorized(request, "sign in first: POST /login, or HTTP Basic")
    return caller


async def the_rpa_bot(request: Request) -> None:
    if await identify(request) is not RPA_BOT:
        raise ApiProblem(401, "the RPA callbacks need the bearer token from INVOICE_AUTOMATION_API_TOKEN",
                         headers={"WWW-Authenticate": "Bearer"})


def _gate_first(gate: Callable[[Request], Awaitable[object]]) -> type[APIRoute]:
    class GateFirst(APIRoute):
        """FastAPI reads a route's body before it solves the route's dependencies; this runs the
        gate before either, so a caller it refuses never has the body read."""

        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            handler = super().get_route_handler()

            async def gate_then_handle(request: Request) -> Response:
                await gate(request)
                try:
                    return await handler(request)
                except HTTPException as error:  # FastAPI's 400 for JSON Python cannot read: a 422 naming the body
                    cause = error.__cause__
                    if (error.status_code == 400 and isinstance(cause, ValueError | RecursionError)
                            and not isinstance(cause, UnicodeDecodeError)):  # not text at all: the 400 it is
                        raise unreadable_json(cause) from None
                    raise

            return gate_then_handle

    return GateFirst


SignedInFirst = _gate_first(person)
RpaBotFirst = _gate_first(the_rpa_bot)


# The security schemes are parameters so that the OpenAPI document shows them; `identify` reads
# the same headers.
async def signed_in(request: Request, _basic: HTTPBasicCredentials | None = Depends(basic_scheme),
                    _cookie: str | None = Depends(cookie_scheme)) -> Principal:
    return await person(request)


async def clerk(request: Request, principal: Principal = Depends(signed_in)) -> Principal:
    if principal.role is not Role.CLERK:
        raise ApiProblem(403, f"{principal.name} is a {principal.role.value}; only a clerk may do this")
    if principal.by_cookie and not request.headers.get(DASHBOARD_HEADER):
        raise ApiProblem(403, f"a signed-in change needs the {DASHBOARD_HEADER} header (CSRF protection)")
    return principal


async def rpa_bot(request: Request, _bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> None:
    await the_rpa_bot(request)


def metrics_reader(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> None:
    if not _authenticator(request).metrics_token_matches(bearer.credentials if bearer else None):
        raise ApiProblem(401, "/metrics needs the bearer token from INVOICE_AUTOMATION_API_METRICS_TOKEN",
                         headers={"WWW-Authenticate": "Bearer"})
