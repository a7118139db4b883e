"""What a verdict or a status change writes to processscheduler, shared by every implementation:
made from the message, or, in the sink, from a verdict's Avro record as read off the topic."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import String

from connectors.ports import SchedulerEntry
from connectors.scheduler.tables import REASON_CODES_LENGTH, processscheduler
from rules.duplicates import invoice_date, lookup_for
from rules.errors import DataError
from rules.identifiers import identifier_key
from rules.lifecycle import StatusChanged
from rules.limits import not_json
from rules.models import Verdict
from rules.po_ledger import verdict_event_id
from schemas.codec import to_record

KEY_WIDTH = 64  # of vendor_key, number_key and loose_number_key (tables.py)


def reason_codes_column(reasons: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The `reason_codes` column: each finding code once, in order, between spaces
    (` PRICE_MISMATCH TAX_MISMATCH `), so that `LIKE '% PRICE_MISMATCH %'` matches one code
    exactly. A code with a space in it, or past the column's length, is left out: no rule's is."""
    text = " "
    for code in dict.fromkeys(reason["code"] for reason in reasons or ()):
        if " " in code or len(text) + len(code) + 1 > REASON_CODES_LENGTH:
            continue
        text += code + " "
    return text if text != " " else None


def stored_key(key: str) -> str:
    """A duplicate-lookup key as its column holds it. Keys are case-folded (ß to ss), so a vendor
    id or number of 64 characters may make a longer one, which the column refused, and the
    verdict's row went to the dead-letter topic. Cut, a key still finds its invoices (the same
    text makes the same cut key), and the rows found are compared in full (`matches_lookup`)."""
    return _utf16_start(key, KEY_WIDTH)


def vendor_key_of(vendor_id: str) -> str:
    """The `vendor_key` a vendor id asked for is stored under: the rules judge `v100` and `V100 `
    as V100's invoices, and a clerk listing V100 by the text as sent did not see them."""
    return stored_key(identifier_key(vendor_id))


def _utf16_start(text: str, units: int) -> str:
    """The longest start of `text` of at most `units` UTF-16 code units, which SQL Server's
    NVARCHAR(n) counts: a character past U+FFFF (an emoji) is two."""
    encoded = text.encode("utf-16-le", errors="surrogatepass")
    if len(encoded) <= 2 * units:
        return text
    return encoded[: 2 * units].decode("utf-16-le", errors="ignore")  # a half pair at the cut goes


def fitted_to_column(text: str | None, column: str) -> str | None:
    """A vendor's id or number as its column can hold it. A bad invoice's verdict carries them as
    sent: past the column's width, or with a NUL in them (PostgreSQL refuses both), its row was
    refused, and the one row AP would have seen of the invoice went to the dead-letter topic. The
    whole text is kept in `invoice_document`."""
    if text is None:
        return None
    kind = processscheduler.c[column].type
    assert isinstance(kind, String) and kind.length is not None, f"{column} is a text column of a set width"
    width = kind.length
    text = text.replace("\x00", "\ufffd")
    return text if _utf16_start(text, width) == text else _utf16_start(text, width - 1) + "\u2026"


def entries(decisions: Sequence[Verdict | StatusChanged | SchedulerEntry]) -> list[SchedulerEntry]:
    """What each decision writes, in order; a verdict of no invoice version writes nothing."""
    made = (decision if isinstance(decision, SchedulerEntry) else entry_of(decision) for decision in decisions)
    return [entry for entry in made if entry is not None]


def entry_of(message: Verdict | StatusChanged) -> SchedulerEntry | None:
    """The entry of a message made here (the API, the in-memory scheduler): through its Avro
    record, as the sink reads it off the topic, so that there is one way to make an entry."""
    if isinstance(message, Verdict):
        return verdict_entry(to_record(message))
    return status_change_entry(to_record(message))


def verdict_entry(record: Mapping[str, Any]) -> SchedulerEntry | None:
    """The entry of a verdict from its Avro record as read (`Codec.read_unvalidated`): the same as
    entry of the decoded verdict (tests/unit/connectors/test_scheduler_rows.py) at a third of the
    cost, most of which was validating the payload and PO snapshot again. The PO agent made
    the record from a validated verdict, so its findings, payload and PO snapshot go to their JSON
    columns as they are; the columns the database types are parsed here, so that a record no
    verdict could be is dead-lettered before the database sees it."""
    invoice_id, version = record["invoice_id"], record["invoice_version"]
    if invoice_id is None or version is None:
        return None
    audit = record["audit"]
    try:
        decided_at = datetime.fromisoformat(record["evaluated_at"])
        # As decoding would read it (free-form JSON, numbers as Decimal) and dumping write it.
        text = audit["invoice"] if audit else None
        document: Any = (to_jsonable_python(json.loads(text, parse_float=Decimal, parse_constant=not_json))
                         if text is not None else None)
    except ValueError as error:
        raise DataError(f"a Verdict record of {invoice_id} v{version} cannot be read: {error}") from None
    found = lookup_for(document)
    status, rules_version = record["status"], record["rules_version"]
    fields = {
        "po_number": record["po_number"], "vendor_id": fitted_to_column(record["vendor_id"], "vendor_id"),
        "invoice_number": fitted_to_column(record["invoice_number"], "invoice_number"), "status": status,
        "http_status": record["http_status"],
        "reasons": record["reasons"], "reason_codes": reason_codes_column(record["reasons"]),
        "rpa_payload": record["rpa_payload"], "rules_version": rules_version,
        "po_snapshot": record["po_snapshot"], "decided_at": decided_at, "invoice_document": document,
        # What the duplicate checks look this invoice up by (rules.duplicates).
        "vendor_key": stored_key(found.vendor_key) if found else None,
        "number_key": stored_key(found.number_key) if found else None,
        "loose_number_key": stored_key(found.loose_key) if found else None,
        "total_amount": found.total_amount if found else None,
        "invoice_date": invoice_date(document) if found else None,  # found: the document is a mapping
    }
    event_id = verdict_event_id(invoice_id, version, status, rules_version, record["judged_after"], record["reasons"])
    event = {"event_id": event_id,
             "invoice_id": invoice_id, "invoice_version": version, "status": status, "occurred_at": decided_at,
             "actor": None, "reason": None, "holds": None}
    return SchedulerEntry((invoice_id, version), fields, event)


def status_change_entry(record: Mapping[str, Any]) -> SchedulerEntry:
    """The entry of a status change from its Avro record as read, as `verdict_entry` is of a verdict."""
    try:
        occurred_at = datetime.fromisoformat(record["occurred_at"])
    except ValueError as error:
        raise DataError(f"a StatusChanged record of {record['invoice_id']} v{record['invoice_version']} "
                        f"cannot be read: {error}") from None
    status = record["status"]
    fields: dict[str, Any] = {"po_number": record["po_number"], "status": status}
    if record["sampro_invoice_id"]:
        fields["sampro_invoice_id"] = record["sampro_invoice_id"]
    if record["rpa_payload"] is not None:  # what went to the bot, also after an AP release
        fields["rpa_payload"] = record["rpa_payload"]
    key = (record["invoice_id"], record["invoice_version"])
    return SchedulerEntry(key, fields, {
        "event_id": record["event_id"], "invoice_id": key[0], "invoice_version": key[1], "status": status,
        "occurred_at": occurred_at, "actor": record["actor"], "reason": record["reason"],
        "holds": record["holds"] or None})


