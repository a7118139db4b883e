"""A reproducible stream of invoices over many POs (crash test, benchmark), and what an
uninterrupted run decides for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from connectors.sampro import InMemoryPurchaseOrderReader
from connectors.scheduler import InMemoryProcessScheduler
from rules.judge import RulesJudge
from rules.lifecycle import InvoiceSubmitted, RpaRequest, StatusChanged
from rules.models import CompletionOutcome, PurchaseOrder, RpaCompletion, Verdict
from rules.policy import Policy
from streams.decisions import DecisionDesk

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def purchase_orders(count: int, prefix: str) -> list[PurchaseOrder]:
    return [PurchaseOrder.model_validate({
        "po_number": f"{prefix}-PO-{n}", "vendor_id": f"{prefix}-V{n % 50}",
        "status": "closed" if n % 97 == 0 else "open",
        "currency": "USD", "order_date": "2026-11-01", "tax_rate": "0.08", "allowed_charges": ["freight"],
        "lines": [{"line_no": j, "part_number": f"P-{j}", "unit_price": f"{(n + j) % 40 + 1}.25",
                   "quantity_ordered": "100", "quantity_received": "100", "quantity_invoiced": "0"}
                  for j in range(1, 6)]}) for n in range(count)]


def invoices(count: int, pos: list[PurchaseOrder], prefix: str, lines: int = 5) -> list[InvoiceSubmitted]:
    out = []
    for i in range(count):
        po = pos[i % len(pos)]
        doc_lines = []
        for j, po_line in enumerate(po.lines[:lines], start=1):
            price = po_line.unit_price + (Decimal("0.10") if i % 7 == 0 and j == 1 else 0)
            qty = Decimal(1 + (i + j) % 5)
            doc_lines.append({"line_no": j, "part_number": po_line.part_number, "quantity": str(qty),
                              "unit_price": str(price), "amount": str(qty * price)})
        subtotal = sum(Decimal(line["amount"]) for line in doc_lines)
        tax = (subtotal * Decimal("0.08")).quantize(Decimal("0.01"))
        # Freight of its own makes each total unique, so that no invoice is a possible duplicate of
        # another: what is decided then does not depend on which was recorded first.
        freight = Decimal(i) * 10_000 + 10
        total = subtotal + tax + freight + (Decimal("1.00") if i % 11 == 0 else 0)
        document = {"invoice_id": f"{prefix}-MP-{i}", "version": 1, "vendor_id": po.vendor_id,
                    "invoice_number": f"{prefix}-INV-{i}", "po_number": po.po_number, "invoice_date": "2026-11-20",
                    "currency": "USD", "lines": doc_lines, "tax_amount": str(tax),
                    "extra_charges": [{"kind": "freight", "amount": str(freight)}], "total_amount": str(total)}
        out.append(InvoiceSubmitted(invoice_id=document["invoice_id"], version=1, po_number=po.po_number,
                                    document=document, received_at=T0 + timedelta(milliseconds=i)))
    return out


def uninterrupted(pos: list[PurchaseOrder], stream: list[InvoiceSubmitted]) -> InMemoryProcessScheduler:
    """The same stream decided in one go, in memory, one invoice after the other."""
    scheduler = InMemoryProcessScheduler()
    desk = DecisionDesk(InMemoryPurchaseOrderReader(pos), scheduler,
                        lambda po, known, now: RulesJudge(po, known, Policy(), now), policy=Policy())
    ledgers: dict = {}
    for submission in stream:
        decisions = desk.decide([submission], ledgers, T0)
        desk.remember(decisions, T0)  # as the PO agent does once the batch is out
        emitted = decisions.messages
        scheduler.record([message for message in emitted if not isinstance(message, RpaRequest)])
    return scheduler


def decided(pos: list[PurchaseOrder], stream: list[InvoiceSubmitted], policy: Policy | None = None,
            batch: int = 500) -> list[Verdict | StatusChanged]:
    """What the verdicts topic holds after the stream, with the RPA bot entering every invoice at
    once (so each one is judged, none stays parked): for replay tests and the replay benchmark."""
    policy = policy or Policy()
    desk = DecisionDesk(InMemoryPurchaseOrderReader(pos), InMemoryProcessScheduler(),
                        lambda po, known, now: RulesJudge(po, known, policy, now), policy=policy)
    ledgers: dict = {}
    recorded: list[Verdict | StatusChanged] = []
    work: list = list(stream)
    while work:
        decisions = desk.decide(work[:batch], ledgers, T0)
        desk.remember(decisions, T0)
        emitted = decisions.messages
        work = work[batch:]
        recorded.extend(m for m in emitted if not isinstance(m, RpaRequest))
        work.extend(RpaCompletion(event_id=f"done-{m.invoice_id}-v{m.invoice_version}", invoice_id=m.invoice_id,
                                  invoice_version=m.invoice_version, po_number=m.po_number,
                                  outcome=CompletionOutcome.SUCCESS, sampro_invoice_id=f"S-{m.invoice_id}",
                                  occurred_at=T0)
                    for m in emitted if isinstance(m, RpaRequest))
    return recorded
