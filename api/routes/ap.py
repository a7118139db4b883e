"""What Accounts Payable reads and does: invoices and their verdicts, the KPI figures, and the two
overrides (release despite findings, send a ready invoice to the RPA bot)."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator
from sse_starlette import EventSourceResponse

from api.auth import Principal, SignedInFirst, clerk, signed_in
from api.comparison import compare
from api.errors import ApiProblem, answers
from api.routes.deps import InvoiceId, context
from api.schemas import (
    NO_NUL,
    CommandAccepted,
    DispatchRequest,
    InvoiceView,
    Me,
    Problem,
    ReasonCode,
    ReleaseRequest,
)
from api.services import failure, find_invoice, holds, release_invoice, send_to_rpa
from connectors.scheduler.read_model import MAX_PAGE, InvoicePage, InvoiceQuery, Kpi
from rules.lifecycle import InvoiceStatus
from rules.models import MAX_VERSION

STREAM_RETRY_SECONDS = 30

router = APIRouter(prefix="/api", tags=["invoices"], route_class=SignedInFirst, responses=answers(401, 413, 422, 429))


def _iso_day(value: object) -> object:
    """Only YYYY-MM-DD: pydantic would also read a number as seconds since 1970."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("expected a day as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]


@router.get("/me", response_model=Me, summary="Who is signed in")
def who_am_i(principal: Principal = Depends(signed_in)) -> Me:
    return Me(name=principal.name, role=principal.role.value)


def invoice_query(
    status: InvoiceStatus | None = None,
    po_number: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    vendor_id: Annotated[str | None, Query(max_length=64, pattern=NO_NUL, description=(
        "Compared as the rules compare vendor ids: edge spaces, Unicode composition and letter case aside"))] = None,
    decided_from: Annotated[Day | None, Query(description="First day (UTC) the verdict was given")] = None,
    decided_to: Annotated[Day | None, Query(description="Last day (UTC), inclusive; not before decided_from "
                                                        "(a 422 naming it)")] = None,
    reason_code: ReasonCode | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    before: Annotated[int | None, Query(ge=1, le=2**31 - 1, description=(
        "The page after one read before: its `next_before`. Unlike an offset, it stays put while "
        "invoices change status"))] = None,
) -> InvoiceQuery:
    if decided_from is not None and decided_to is not None and decided_to < decided_from:
        # An empty page would read as "nothing decided then": the two days were swapped.
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "decided_to"), "input": str(decided_to),
                                       "msg": f"Value error, is before decided_from ({decided_from})"}])
    return InvoiceQuery(status=status, po_number=po_number, vendor_id=vendor_id, decided_from=decided_from,
                        decided_to=decided_to, reason_code=reason_code.value if reason_code else None,
                        limit=limit, offset=offset, before=before)


@router.get("/invoices", response_model=InvoicePage, summary="Invoice versions, newest first")
def list_invoices(query: InvoiceQuery = Depends(invoice_query), _: Principal = Depends(signed_in),
                  ctx=Depends(context)) -> InvoicePage:
    return ctx.read_model.invoices(query)


@router.get("/invoices/{invoice_id:path}", response_model=InvoiceView, responses=answers(404),
            summary="One invoice: verdict, invoice beside PO, RPA payload, status history")
def show_invoice(invoice_id: InvoiceId, version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
                 _: Principal = Depends(signed_in), ctx=Depends(context)) -> InvoiceView:
    found = find_invoice(ctx.read_model, invoice_id, version)
    return InvoiceView(**found.model_dump(), comparison=compare(found, ctx.matchings), holds=holds(found),
                       failure=failure(found), release_reason_codes=ctx.settings.release_reason_codes)


@router.post("/invoices/{invoice_id:path}/release", status_code=202, response_model=CommandAccepted,
             responses=answers(400, 403, 404, 409, 503), summary="Release despite the findings (clerk)")
def release(invoice_id: InvoiceId, body: ReleaseRequest, principal: Principal = Depends(clerk),
            ctx=Depends(context)) -> CommandAccepted:
    codes = ctx.settings.release_reason_codes
    if body.reason_code not in codes:  # a 422 naming the field, as for any other (a bare 400 before)
        raise RequestValidationError([{"type": "enum", "loc": ("body", "reason_code"), "input": body.reason_code,
                                       "msg": f"Input should be one of {', '.join(codes)}"}])
    command = release_invoice(ctx.read_model, ctx.commands, ctx.clock, invoice_id=invoice_id,
                              version=body.invoice_version, user=principal.name, reason=body.reason,
                              named=body.holds, reason_code=body.reason_code, seen=body.seen)
    return CommandAccepted(command_id=command.command_id, invoice_id=invoice_id, invoice_version=body.invoice_version,
                           po_number=command.po_number,
                           detail="released on the PO's stream; the invoice goes to the RPA bot once no hold is "
                                  "left and the PO is free")


@router.post("/invoices/{invoice_id:path}/send-to-rpa", status_code=202, response_model=CommandAccepted,
             responses=answers(400, 403, 404, 409, 503), summary="Send a ready invoice to the RPA bot (clerk)")
def approve_dispatch(invoice_id: InvoiceId, body: DispatchRequest, principal: Principal = Depends(clerk),
                     ctx=Depends(context)) -> CommandAccepted:
    command = send_to_rpa(ctx.read_model, ctx.commands, ctx.clock, invoice_id=invoice_id,
                          version=body.invoice_version, user=principal.name)
    return CommandAccepted(command_id=command.command_id, invoice_id=invoice_id, invoice_version=body.invoice_version,
                           po_number=command.po_number, detail="approved on the PO's stream")


@router.get("/kpi", response_model=Kpi, summary="Counts by status and reason, verdicts per minute, waiting work; "
            "AP's own KPIs over the last 30 days (`ap`)")
def show_kpi(_: Principal = Depends(signed_in), ctx=Depends(context)) -> Kpi:
    return ctx.kpi.get()


@router.get("/events", response_class=EventSourceResponse, summary="Live KPI figures and changed rows (SSE)",
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`update` events: {kpi, changed: [invoice summaries]}; "
                                            "the stream ends when its session does"},
                       429: {"model": Problem, "description": "The user has the most live streams a user may "
                                                              "open, or the API the most in all"}})
async def stream_updates(principal: Principal = Depends(signed_in), ctx=Depends(context)) -> EventSourceResponse:
    if (refused := ctx.live.refused(principal.name)) is not None:
        raise ApiProblem(429, refused, headers={"Retry-After": str(STREAM_RETRY_SECONDS)})

    # Signed in otherwise than by cookie (HTTP Basic, the single-sign-on proxy), the stream ends as a
    # session would: the browser opens it again and signs in again, so a user the proxy no longer
    # names, or removed from API_USERS, no longer watches invoices go by.
    opened_as = principal if principal.by_cookie else replace(principal, session_ends=time.time() + ctx.auth.max_age)

    async def still_signed_in() -> bool:
        return await run_in_threadpool(ctx.auth.still_signed_in, opened_as)

    async def updates():
        async for update in ctx.live.subscribe(still_signed_in, principal.name):
            yield {"event": "update", "data": update}

    return EventSourceResponse(updates(), ping=15, send_timeout=ctx.live.send_timeout)
