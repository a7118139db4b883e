"""The largest request body each route takes, refused with a JSON Problem (413) that names the limit
in bytes and the setting that sets it, as the OpenAPI document promises.

A declared length over the limit is refused before the app runs, so before who is calling is
settled: nothing of the body has been read. A body without one (chunked) is counted as it is read
and refused at the first piece past the limit, so it is never held whole. (Starlette's limiter
answered the first in text/plain and the second as {"detail": "Content Too Large"}: neither said
how much the API takes, nor where that is set.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class Limit:
    most: int  # bytes
    setting: str  # the variable that sets it
    where: str = "this API"  # what takes it, as the answer names it

    @property
    def refusal(self) -> str:
        return f"the body is larger than {self.most} bytes, the most {self.where} takes ({self.setting})"


class BodyTooLarge(HTTPException):
    """Raised while a route reads its body. An HTTPException: FastAPI's body parsing passes it on
    (any other error it answers 400, "There was an error parsing the body"), and the app's handler
    answers it as JSON."""


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: Limit, by_path: Mapping[str, Limit]):
        self.app, self.limit, self.by_path = app, limit, by_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.by_path.get(scope["path"], self.limit)
        if (_declared_length(scope) or 0) > limit.most:
            return await JSONResponse({"detail": limit.refusal}, status_code=413)(scope, receive, send)
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit.most:
                    raise BodyTooLarge(413, limit.refusal)
            return message

        await self.app(scope, counted, send)


def _declared_length(scope: Scope) -> int | None:
    try:
        return int(Headers(scope=scope).get("content-length", ""))
    except ValueError:  # none, or not a number: the server (h11) refuses the latter before us
        return None

