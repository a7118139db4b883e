"""The PO agent: one ordered stream of work per purchase order, decided in batches."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rules.context import KnownInvoices
from rules.errors import DataError, RefusedEdit
from rules.lifecycle import InvoiceReplaced, InvoiceSubmitted, InvoiceWithdrawn, RpaRequest
from streams.decisions import DECIDE, INVOICE_WORK, WORK_KINDS
from streams.failures import describe
from streams.runtime import Batch, Flow

if TYPE_CHECKING:
    from streams.bootstrap import Pipeline


def register(pipeline: Pipeline) -> None:
    topics, codec, desk, ledgers = pipeline.topics, pipeline.codec, pipeline.desk, pipeline.ledgers
    timed = desk.timed
    # Verdicts and status changes go to the verdicts topic; work for another PO, to that PO's stream.
    topic_of = {RpaRequest: topics.rpa_requests, InvoiceReplaced: topics.invoices, InvoiceWithdrawn: topics.invoices}

    def decode(record):
        work = codec.decode(record.value)
        # Keyed by another PO, it would sit in another PO's partition and state. (Another kind of
        # message is the runtime's to dead-letter.)
        if isinstance(work, WORK_KINDS) and record.key != work.po_number.encode():
            raise DataError(f"record key {record.key!r} is not its po_number {work.po_number!r}")
        return work

    def decide(batch: Batch) -> None:
        partition_of: dict[str, int] = {}
        invoices_of: dict[str, set[str]] = defaultdict(set)  # the invoices the batch names, per PO
        for record, work in batch.items:
            partition_of[work.po_number] = record.partition
            if isinstance(work, INVOICE_WORK):
                invoices_of[work.po_number].add(work.invoice_id)
        with timed("ledger state"):
            stored = {po: ledgers.load(batch.state(partition), po, invoices_of[po])
                      for po, partition in partition_of.items()}
        current = {po: loaded.ledger for po, loaded in stored.items() if loaded.ledger is not None}
        now = datetime.now(UTC)
        decisions = desk.decide(batch.messages, current, now, partition_of)
        for message in decisions.messages:  # its verdicts are counted by the runtime, once committed
            batch.emit(topic_of.get(type(message), topics.verdicts), message.po_number, message)
        with timed("ledger state"):
            ledgers.save_all(((batch.state(partition_of[po]), ledger, stored[po]) for po, ledger in current.items()),
                             batch.messages)
        desk.remember(decisions, now)  # what a DataError above dead-letters is not remembered

    def bad_invoice_verdict(record, work, error):
        if isinstance(error, RefusedEdit):  # a version judged already: its history tells the refusal
            return [(topics.verdicts, work.po_number, error.note)]
        if not isinstance(work, InvoiceSubmitted):
            return []
        verdict = desk.judge_for(None, KnownInvoices(), datetime.now(UTC)).could_not_judge(work, describe(error))
        return [(topics.verdicts, work.po_number, verdict)]

    pipeline.runtime.add_flow(Flow(DECIDE, topics.purchase_order_work, decode, decide,
                                   kinds=WORK_KINDS, store=ledgers.store, stage="decide",
                                   on_dead_letter=bad_invoice_verdict, on_gone=desk.recent.gone))
