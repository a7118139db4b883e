"""The dry run: the verdict the rules give an invoice JSON now, against Sampro, nothing written.

Its body may be larger than any other (API_MAX_VALIDATE_BODY_BYTES, api/app.py), and it is read
only after the caller signed in (`SignedInFirst`). A body that is not a JSON object is a 422 that
says where; a problem with the invoice's contents is a verdict.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

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

router = APIRouter(prefix="/api", tags=["invoices"], route_class=SignedInFirst, responses=answers(401, 413, 422, 429))

INVOICE_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": True,
    "description": "The invoice as canonical JSON (DESIGN §3); amounts as decimal strings or numbers. "
                   "Contract problems come back as INVALID_INVOICE findings, not as errors."}}}}


def _invoice_document(raw: bytes) -> dict[str, Any]:
    """JSON numbers are read as Decimal, so "15.50" and 15.50 mean the same money."""
    try:
        document = json.loads(raw, parse_float=Decimal, parse_constant=not_json)
        json.dumps(document, ensure_ascii=False, default=str).encode()  # a lone surrogate escape is not text
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
    document = _invoice_document(await request.body())
    verdict = await run_in_threadpool(dry_run, document, ctx.purchase_orders, ctx.scheduler, ctx.policy,
                                     ctx.limits, ctx.clock())
    return JSONResponse(verdict.model_dump(mode="json", exclude={"audit"}), status_code=verdict.http_status)
