"""Errors as JSON that say what was wrong: the field and the value for bad input, the current
status for a conflict. Every route documents the answers it can give (`responses`).

The service's one error family (rules.errors), into which the adapters map their drivers' errors,
is answered by type: DataError 400, NotFound 404, Conflict 409, Unavailable 503. A more specific
class (an invoice that is not in a state for the action, a command Kafka did not take) keeps its
own answer."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from api.headers import security_headers
from api.schemas import Conflict, Problem, ValidationProblem
from api.services import NotNow, NotYet
from connectors.api_ports import CommandNotDelivered
from rules.errors import Conflict as ConflictError
from rules.errors import DataError, NotFound, Unavailable
from rules.parsing import field_path

log = logging.getLogger(__name__)

# Never echoed back in an error: the answer may be logged, cached or shown over a shoulder.
SECRET_FIELDS = {"password"}
# A 422 lists at most these errors, and counts the rest: an RPA failure body of 59 KB with 6,000
# unknown keys was answered with all 6,000 errors, 455 KB.
ERRORS_LISTED = 20
LONGEST_SHOWN = 200  # characters of a field's name or value in an error


class ApiProblem(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra


def not_json(position: int, reason: str) -> RequestValidationError:
    """A 422 for a body that is no JSON the API reads, as FastAPI words one that is not JSON at all."""
    return RequestValidationError([{"type": "json_invalid", "loc": ("body", position), "msg": "JSON decode error",
                                    "input": {}, "ctx": {"error": reason}}])


def unreadable_json(error: ValueError | RecursionError) -> RequestValidationError:
    """JSON, but not what Python reads: an integer of more digits than it converts, or nesting
    deeper than its parser follows."""
    if isinstance(error, RecursionError):
        return not_json(0, "nested too deeply")
    return not_json(getattr(error, "pos", 0), getattr(error, "msg", str(error)))


def _shown(value: Any) -> Any:
    """The offending value as JSON, cut short when long."""
    try:
        shown = jsonable_encoder(value)
        text = json.dumps(shown, ensure_ascii=False)
        text.encode()
    except (TypeError, ValueError):  # UnicodeEncodeError too: a lone surrogate is not text
        shown = text = ascii(value)
    except RecursionError:  # deeper than the encoder goes: say what it was, not all of it
        shown = text = f"a {type(value).__name__} nested too deeply to show"
    return shown if len(text) <= LONGEST_SHOWN else _cut(text)


def _cut(text: str) -> str:
    return text if len(text) <= LONGEST_SHOWN else text[:LONGEST_SHOWN - 3] + "..."


def _error(error: dict) -> dict:
    where, *rest = error["loc"]
    if error["type"] == "json_invalid":  # loc is ("body", character position)
        reason = error.get("ctx", {}).get("error", "")
        return {"field": where, "value": None,
                "message": f"the body is not valid JSON ({reason} at character {rest[0]})"}
    field = _cut(f"{where}.{field_path(tuple(rest))}" if rest else str(where))  # a key may be as long as the body
    secret = bool(rest) and str(rest[-1]) in SECRET_FIELDS
    given = None if error["type"] == "missing" or secret else _shown(error.get("input"))  # input: the enclosing object
    return {"field": field, "value": given, "message": error["msg"]}


def _said(error: dict) -> str:
    value = "" if error["value"] is None else f" = {error['value']!r}"
    return f"{error['field']}{value}: {error['message']}"


def validation_problem(exc: RequestValidationError) -> ValidationProblem:
    found = exc.errors()
    errors = [_error(e) for e in found[:ERRORS_LISTED]]
    summary = "; ".join(_said(e) for e in errors[:5])
    return ValidationProblem(detail=f"invalid request: {summary}", errors=errors,
                             errors_not_listed=len(found) - len(errors))


async def _allow_every_method(request: Request, exc: StarletteHTTPException):
    """A wrong method on a path that two routes serve (GET and POST /login) lists both in Allow."""
    response = await http_exception_handler(request, exc)
    if exc.status_code == 405:
        allowed = {method for route in request.app.router.routes if isinstance(route, Route)
                   and route.matches(request.scope)[0] is not Match.NONE for method in route.methods or ()}
        response.headers["Allow"] = ", ".join(sorted(allowed))
    return response


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _allow_every_method)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Answered by Starlette's outermost middleware, outside SecurityHeaders: the headers go here.
        # (It raises the error again, for the server to log.)
        https = request.url.scheme == "https" or request.app.state.context.settings.api_served_over_https
        return JSONResponse({"detail": "an unexpected error: it is logged"}, status_code=500,
                            headers=security_headers(https, request.url.path))

    @app.exception_handler(ApiProblem)
    async def api_problem(_request: Request, exc: ApiProblem) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(DataError)
    async def bad_data(_request: Request, exc: DataError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ConflictError)
    async def conflict(_request: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(Unavailable)
    async def unavailable(_request: Request, exc: Unavailable) -> JSONResponse:
        # The detail names hosts, ports and drivers: it goes to the log, the answer names the dependency.
        log.warning("%s: %s", exc.dependency, exc.detail)
        return JSONResponse({"detail": f"{exc.dependency} cannot be reached, try again"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(NotYet)
    async def not_yet(_request: Request, exc: NotYet) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(NotNow)
    async def not_now(_request: Request, exc: NotNow) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "current_status": exc.current_status.value}, status_code=409)

    @app.exception_handler(CommandNotDelivered)
    async def not_delivered(_request: Request, exc: CommandNotDelivered) -> JSONResponse:
        # As for any outage: the detail (topics, the client's errors) to the log, a wait to the caller.
        log.warning("a command was not delivered: %s", exc.detail)
        return JSONResponse({"detail": "the command was not delivered (kafka does not answer), try again"},
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_problem(exc).model_dump(mode="json"), status_code=422)


_MODELS = {409: Conflict, 422: ValidationProblem}
_DESCRIPTIONS = {
    400: "The body cannot be parsed at all (not UTF-8 text)",
    401: "Not signed in, or no valid token",
    403: "Not allowed for this role",
    404: "No such invoice",
    409: "The invoice is not in a state that allows this",
    413: "The body is larger than the route takes: the answer names the limit in bytes and its setting "
         "(INVOICE_AUTOMATION_API_MAX_BODY_BYTES; for /api/validate INVOICE_AUTOMATION_API_MAX_VALIDATE_BODY_BYTES)",
    422: "Invalid input: names the field and the value",
    429: "Too many failed sign-ins from this user or address: try again after Retry-After seconds",
    502: "Sampro answered with data that cannot be used",
    503: "Kafka or the database cannot be reached, or (a callback) processscheduler does not show yet the "
         "invoice its email came for: try again after Retry-After seconds",
}


def answers(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for the error statuses a route can give."""
    return {status: {"model": _MODELS.get(status, Problem), "description": _DESCRIPTIONS[status]}
            for status in statuses}
