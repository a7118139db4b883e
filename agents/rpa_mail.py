"""rpa.requests -> the RPA bot's mailbox. An unreachable mailbox holds the partition; an email that
can never be sent fails the hand-off, so the PO goes on to its next invoice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rules.lifecycle import RpaRequest
from rules.models import CompletionOutcome, RpaCompletion
from streams.runtime import Batch, Flow

if TYPE_CHECKING:
    from streams.bootstrap import Pipeline


def register(pipeline: Pipeline) -> None:
    topics, codec, mailer = pipeline.topics, pipeline.codec, pipeline.mailer

    def send(batch: Batch) -> None:
        mailer.send(batch.messages)

    def failed_hand_off(record, request, reason):
        if not isinstance(request, RpaRequest):
            return []
        completion = RpaCompletion(event_id=f"mail:{request.invoice_id}:v{request.invoice_version}:undeliverable",
                                   invoice_id=request.invoice_id, invoice_version=request.invoice_version,
                                   po_number=request.po_number, outcome=CompletionOutcome.FAILURE,
                                   error=f"The RPA email could not be sent: {reason[:300]}",
                                   occurred_at=datetime.now(UTC))
        return [(topics.completions, request.po_number, completion)]

    pipeline.mail_runtime.add_flow(Flow("send-to-rpa-mailbox", (topics.rpa_requests,),
                                   decode=lambda record: codec.decode(record.value), handle=send,
                                   kinds=(RpaRequest,), stage="mail", on_dead_letter=failed_hand_off))
