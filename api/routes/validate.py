"""The dry run: the verdict the rules give an invoice JSON now, against Sampro, nothing written.

Its body may be larger than any other (API_MAX_VALIDATE_BODY_BYTES, api/app.py), and it is read
only after the caller signed in (`SignedInFirst`). A body that is not a JSON object is a 422 that
says where; a problem with the invoice's contents is a verdict.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.auth import Principal, SignedInFirst, signed_in
from api.errors import answers, unreadable_json
from api.routes.deps import context
from api.schemas import VerdictAnswer
from api.services import dry_run
from rules.limits import not_json

if TYPE_CHECKING:
    from api.app import ApiContext

router = APIRouter(prefix="/api", tags=["invoices"], route_class=SignedInFirst, responses=answers(401, 413, 422, 429))

INVOICE_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": True,
    "description": "The invoice as canonical JSON (DESIGN §3); amounts as decimal strings or numbers. "
                   "Contract problems come back as INVALID_INVOICE findings, not as errors."}}}}


# Python functions, not Decimal and str themselves: json's C parser and writer calling C never let
# go of the GIL, and the event loop waited for a whole 1 MiB body of numbers (200-400 ms each way)
# though it was read in the thread pool. Each call into Python lets the interpreter hand the GIL
# over (every 5 ms), for some 150 ms more of the thread's time on such a body.
def _read_number(text: str) -> Decimal:
    return Decimal(text)


def _written_number(number: Decimal) -> str:
    return str(number)


def _invoice_document(raw: bytes) -> dict[str, Any]:
    """Blocking. JSON numbers are read as Decimal, so "15.50" and 15.50 mean the same money."""
    try:
        document = json.loads(raw, parse_float=_read_number, parse_constant=not_json)
        # A lone surrogate escape is not text.
        json.dumps(document, ensure_ascii=False, default=_written_number).encode()
    except (ValueError, RecursionError) as exc:  # the parser's own limits, far beyond an invoice's
        raise unreadable_json(exc) from None
    if not isinstance(document, dict):
        raise RequestValidationError([{"type": "dict_type", "loc": ("body",), "input": document,
                                       "msg": "an invoice must be a JSON object"}])
    return document


@router.post("/validate", response_model=VerdictAnswer, openapi_extra={"requestBody": INVOICE_BODY},
             responses={400: {"model": VerdictAnswer, "description": "manual_review or bad_invoice"},
                        404: {"model": VerdictAnswer, "description": "po_not_found"}, **answers(502)},
             summary="Dry run: the verdict the rules give now, nothing written")
async def validate_invoice(request: Request, _: Principal = Depends(signed_in), ctx=Depends(context)) -> JSONResponse:
    # Read, judged and answered in the thread pool: on the event loop, a 1 MiB body of numbers took
    # 431 ms to read and 181 ms to write again (the text check), and /healthz, which runs there, waited.
    return await run_in_threadpool(_dry_run_answer, await request.body(), ctx)


def _dry_run_answer(raw: bytes, ctx: ApiContext) -> JSONResponse:
    """Blocking: the body read (RequestValidationError when it is no JSON object), the verdict and its JSON."""
    verdict = dry_run(_invoice_document(raw), ctx.purchase_orders, ctx.scheduler, ctx.policy, ctx.limits, ctx.clock())
    return JSONResponse(verdict.model_dump(mode="json", exclude={"audit"}), status_code=verdict.http_status)
