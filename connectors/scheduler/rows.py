"""What a verdict or a status change writes: plain row dicts shared by every implementation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rules.duplicates import invoice_date, lookup_for
from rules.lifecycle import StatusChanged
from rules.models import Verdict
from rules.po_ledger import change_digest


def verdict_event_id(verdict: Verdict) -> str:
    event = f"verdict:{verdict.invoice_id}:v{verdict.invoice_version}:{verdict.status.value}:{verdict.rules_version}"
    if verdict.judged_after is None:
        return event
    # The change's own id can be long; its digest keeps the event id within the column's 200.
    return f"{event}:after:{change_digest(verdict.judged_after)}"


def key(message: Verdict | StatusChanged) -> tuple[str, int]:
    """For messages of one invoice version (the sinks skip the others)."""
    if message.invoice_id is None or message.invoice_version is None:
        raise ValueError(f"{type(message).__name__} of no invoice version has no processscheduler row")
    return message.invoice_id, message.invoice_version


def row_fields(message: Verdict | StatusChanged) -> dict[str, Any]:
    """The processscheduler columns this message sets (the rest are left as they are)."""
    if isinstance(message, Verdict):
        data = message.model_dump(mode="json", include={"reasons", "rpa_payload", "po_snapshot", "audit"})
        document = data["audit"]["invoice"] if data["audit"] else None
        found = lookup_for(document)
        return {
            "po_number": message.po_number, "vendor_id": message.vendor_id, "invoice_number": message.invoice_number,
            "status": message.status.value, "http_status": message.http_status, "reasons": data["reasons"],
            "rpa_payload": data["rpa_payload"], "rules_version": message.rules_version,
            "po_snapshot": data["po_snapshot"], "decided_at": message.evaluated_at,
            "invoice_document": document,
            # What the duplicate checks look this invoice up by (rules.duplicates).
            "vendor_key": found.vendor_key if found else None, "number_key": found.number_key if found else None,
            "loose_number_key": found.loose_key if found else None,
            "total_amount": found.total_amount if found else None,
            "invoice_date": invoice_date(document) if found and isinstance(document, Mapping) else None,
        }
    fields: dict[str, Any] = {"po_number": message.po_number, "status": message.status.value}
    if message.sampro_invoice_id:
        fields["sampro_invoice_id"] = message.sampro_invoice_id
    if message.rpa_payload is not None:  # what went to the bot, also after an AP release
        fields["rpa_payload"] = message.rpa_payload.model_dump(mode="json")
    return fields


def history_row(message: Verdict | StatusChanged) -> dict[str, Any]:
    if isinstance(message, Verdict):
        return {"event_id": verdict_event_id(message), "invoice_id": message.invoice_id,
                "invoice_version": message.invoice_version, "status": message.status.value,
                "occurred_at": message.evaluated_at, "actor": None, "reason": None, "holds": None}
    return {"event_id": message.event_id, "invoice_id": message.invoice_id, "invoice_version": message.invoice_version,
            "status": message.status.value, "occurred_at": message.occurred_at, "actor": message.actor,
            "reason": message.reason, "holds": message.holds or None}
