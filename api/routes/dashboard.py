"""The dashboard page and signing in. The page is static HTML, CSS and JavaScript; what it shows
comes from /api/kpi, /api/invoices and the live /api/events stream."""

from __future__ import annotations

from html import escape
from pathlib import Path
from string import Template
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from api.auth import SESSION_COOKIE, cookie_scheme
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


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=303)


@router.get("/dashboard", response_class=HTMLResponse, summary="The live KPI dashboard",
            responses={303: {"description": "Not signed in: to /login"}})
def show_dashboard(request: Request, cookie: str | None = Depends(cookie_scheme), ctx=Depends(context)):
    auth = ctx.auth
    if auth.from_trusted_headers(request) is None and (not cookie or auth.from_session(cookie) is None):
        return RedirectResponse("/login?next=/dashboard", status_code=303)
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/login", response_class=HTMLResponse, summary="The sign-in form")
def show_login(next: str = "/dashboard") -> HTMLResponse:  # noqa: A002 (the query parameter's name)
    return HTMLResponse(_login_page(next))


@router.post("/login", status_code=303, response_class=RedirectResponse, summary="Sign in: sets the session cookie",
             responses={303: {"description": "Signed in: to `next`"},
                        401: {"description": "Wrong name or password: the form again", "content": {"text/html": {}}}})
def sign_in(request: Request, username: Annotated[str, Form(min_length=1, max_length=200)],
            password: Annotated[str, Form(min_length=1, max_length=1000)], next: Annotated[str, Form()] = "/dashboard",  # noqa: A002
            ctx=Depends(context)):
    principal = ctx.auth.check_password(username, password)
    if principal is None:
        return HTMLResponse(_login_page(next, "Wrong name or password."), status_code=401)
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, ctx.auth.session_for(principal), max_age=ctx.auth.max_age, httponly=True,
                        samesite="lax", secure=request.url.scheme == "https")
    return response


@router.post("/logout", summary="Sign out", responses={303: {"description": "To /login"}})
def sign_out() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
