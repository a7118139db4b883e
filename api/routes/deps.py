"""What every route gets from the app: the context built by `create_app`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Path, Request

from api.schemas import NO_NUL

if TYPE_CHECKING:
    from api.app import ApiContext


def context(request: Request) -> ApiContext:
    return request.app.state.context


InvoiceId = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL, description="The marketplace record id")]
