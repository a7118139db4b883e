"""The dashboard page and signing in. The page is static HTML, CSS and JavaScript; what it shows
comes from /api/kpi, /api/invoices and the live /api/events stream."""

from __future__ import annotations

from html import escape
from pathlib import Path
from string import Template
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from api.auth import SESSION_COOKIE, Principal, SignInRefused, client_address, identify
from api.errors import answers
from api.routes.deps import context

STATIC = Path(__file__).resolve().parents[1] / "static"
router = APIRouter(tags=["dashboard"], responses=answers(422))


def _local(path: str | None) -> str:
    """Only a path on this site, so the login form cannot send anyone elsewhere."""
    return path if path and path.startswith("/") and not path.startswith("//") and "\\" not in path else "/dashboard"


def _login_page(next_path: str, error: str = "") -> str:
    page = Template((STATIC / "login.html").read_text())
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return page.substitute(next=escape(_local(next_path), quote=True), error=message)


def _cookie_options(request: Request, ctx) -> dict:
    # Behind a TLS proxy the request arrives as http: the setting says what the browser used.
    return {"httponly": True, "samesite": "lax", "secure": ctx.auth.secure_cookies or request.url.scheme == "https"}


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=303)


@router.get("/dashboard", response_class=HTMLResponse, summary="The live KPI dashboard",
            responses={303: {"description": "Not signed in: to /login"},
                       # Wrong HTTP Basic credentials too often: a JSON problem, as from the API.
                       429: {"description": "Too many failed sign-ins: try again after Retry-After seconds",
                             "content": {"application/json": {}}}})
async def show_dashboard(request: Request):
    if not isinstance(await identify(request), Principal):
        return RedirectResponse("/login?next=/dashboard", status_code=303)
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/login", response_class=HTMLResponse, summary="The sign-in form")
def show_login(next: str = "/dashboard") -> HTMLResponse:  # noqa: A002 (the query parameter's name)
    return HTMLResponse(_login_page(next))


@router.post("/login", status_code=303, response_class=RedirectResponse, summary="Sign in: sets the session cookie",
             responses={303: {"description": "Signed in: to `next`"},
                        401: {"description": "Wrong name or password: the form again", "content": {"text/html": {}}},
                        429: {"description": "Too many failed sign-ins: the form again, and Retry-After",
                              "content": {"text/html": {}}},
                        503: {"description": "Too many sign-ins at once", "content": {"text/html": {}}}})
async def sign_in(request: Request, username: Annotated[str, Form(min_length=1, max_length=200)],
                  password: Annotated[str, Form(min_length=1, max_length=1000)],
                  next: Annotated[str, Form(max_length=2000)] = "/dashboard",  # noqa: A002
                  ctx=Depends(context)):
    try:
        principal = await ctx.auth.check_password(username, password, client_address(request))
    except SignInRefused as refused:
        message = "Wrong name or password." if refused.status == 401 else refused.detail.capitalize() + "."
        return HTMLResponse(_login_page(next, message), status_code=refused.status, headers=refused.headers)
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, await run_in_threadpool(ctx.auth.session_for, principal),
                        max_age=ctx.auth.max_age, **_cookie_options(request, ctx))
    return response


@router.post("/logout", summary="Sign out: ends every session of the signed-in user, on every device",
             responses={303: {"description": "To /login"}})
async def sign_out(request: Request, ctx=Depends(context)) -> RedirectResponse:
    cookie = request.cookies.get(SESSION_COOKIE)
    principal = await run_in_threadpool(ctx.auth.from_session, cookie) if cookie else None
    if principal is not None:
        await run_in_threadpool(ctx.auth.sessions.end_sessions, principal.name)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, **_cookie_options(request, ctx))
    return response
