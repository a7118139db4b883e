"""What every route gets from the app: the context built by `create_app`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Path, Request

from api.schemas import NO_NUL

if TYPE_CHECKING:
    from api.app import ApiContext


def context(request: Request) -> ApiContext:
    return request.app.state.context


# Taken as a path (`{invoice_id:path}` in the routes): a marketplace id may hold a "/" (2026/INV/42),
# which a client sends as %2F and the server has decoded before the routes see it.
InvoiceId = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL, description="The marketplace record id")]
