"""The RPA bot's callbacks: it entered an invoice version in Sampro, or it could not.

Each report becomes an RpaCompletion on the PO's stream with an event id fixed by the attempt
and its outcome, so the same report twice is applied once. 404: no such invoice version; 409:
the invoice is not at the RPA bot (an entry reported after a failure is taken, also once the
version was superseded or withdrawn since: Sampro holds it),
or it is entered under another Sampro invoice id (a second entry: published all the same, so
that the invoice's history tells AP to reverse one), or the Sampro invoice reported is one another
invoice is recorded entered as (published all the same, as the entry the bot says it made, with a
note in the invoice's history for AP to find both in Sampro and correct the one misread); 202 with
`already_recorded`: this attempt's outcome is already in processscheduler.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.auth import RpaBotFirst, rpa_bot
from api.errors import answers
from api.routes.deps import InvoiceId, context
from api.schemas import CallbackAccepted, RpaFailure, RpaSuccess
from api.services import CompletionReport, record_rpa_outcome
from rules.models import CompletionOutcome

router = APIRouter(prefix="/rpa/invoices/{invoice_id:path}", tags=["rpa"], route_class=RpaBotFirst,
                   dependencies=[Depends(rpa_bot)], responses=answers(400, 401, 404, 409, 413, 422, 503))


def _accepted(report: CompletionReport, invoice_id: str, version: int, outcome: CompletionOutcome) -> CallbackAccepted:
    detail = ("this outcome was already recorded; nothing was sent again" if report.already_recorded
              else "on the purchase order's stream; processscheduler shows it once the pipeline has applied it")
    return CallbackAccepted(event_id=report.event_id, invoice_id=invoice_id, invoice_version=version, outcome=outcome,
                            already_recorded=report.already_recorded, detail=detail)


@router.post("/success", status_code=202, response_model=CallbackAccepted, summary="The bot entered the invoice")
def report_success(body: RpaSuccess, invoice_id: InvoiceId, ctx=Depends(context)) -> CallbackAccepted:
    report = record_rpa_outcome(ctx.read_model, ctx.sent_log, ctx.commands, ctx.clock, invoice_id=invoice_id,
                                version=body.invoice_version, outcome=CompletionOutcome.SUCCESS,
                                attempt=body.attempt, sampro_invoice_id=body.sampro_invoice_id)
    return _accepted(report, invoice_id, body.invoice_version, CompletionOutcome.SUCCESS)


@router.post("/failure", status_code=202, response_model=CallbackAccepted,
             summary="The bot could not enter the invoice")
def report_failure(body: RpaFailure, invoice_id: InvoiceId, ctx=Depends(context)) -> CallbackAccepted:
    report = record_rpa_outcome(ctx.read_model, ctx.sent_log, ctx.commands, ctx.clock, invoice_id=invoice_id,
                                version=body.invoice_version, outcome=CompletionOutcome.FAILURE,
                                attempt=body.attempt, error=body.error)
    return _accepted(report, invoice_id, body.invoice_version, CompletionOutcome.FAILURE)
