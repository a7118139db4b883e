"""Has this invoice been seen before? The duplicate checks' questions, in one place.

- DUPLICATE_INVOICE (bad_invoice): the same vendor and the same invoice number, both compared as
  identifiers (trimmed, NFC, case-folded): `nv-2026-0417` is `NV-2026-0417`.
- POSSIBLE_DUPLICATE (manual_review): the same vendor and a number that is the same once only its
  letters and digits are kept and leading zeros dropped (`INV-0042`, `INV42`, `inv 0042`), or
  the same vendor and the same total within the policy's window of days under another number.

Only earlier invoices that were processed count: one rejected (bad_invoice, po_not_found),
withdrawn or superseded was never paid, so sending it again is no duplicate. Another version of
the same invoice id is the same invoice, never its duplicate.

The checks see what processscheduler and the worker's own memory hold when they judge, so two
workers may each pass one of a pair decided at the same moment. The hand-off to the RPA bot is
the last gate: each invoice handed over takes its vendor and number (`hand_off_key`) first, and
another invoice that finds them taken by one that counts is not handed over (`handed_over_already`).
Nor is another version of an invoice that is in Sampro, or may be, whatever its number (each
takes its invoice id too, `invoice_key`): a vendor's edit after the entry, which the PO agent
cannot know of when it names another PO.

`Lookup` is what the stores are asked for, once per batch: the vendor and number keys, the loose
number keys and the totals of the invoices being judged, each total with the dates the same-total
check can use (the vendor's window around the invoice's date). The stores return candidates; the
exact comparisons are made here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from rules.context import NOT_PROCESSED, KnownInvoice
from rules.identifiers import IdentifierRules, identifier_key, loose_number_key
from rules.lifecycle import InvoiceStatus
from rules.models import Invoice, RpaPayload
from rules.policy import Policy


@dataclass(frozen=True, slots=True)
class Lookup:
    """Candidates to ask a store for: one per invoice being judged."""

    vendor_key: str
    number_key: str
    loose_key: str
    total_amount: Decimal | None
    vendor_id: str  # as sent, for stores that can only compare what they hold
    invoice_number: str
    # The first and last invoice date (both included) an earlier invoice of the same total may have
    # to be a possible duplicate: the vendor's window around this one's (`lookups_for`). None: the
    # total is not asked for. Asked from all time, a flat-fee vendor's years of invoices of one
    # total were read for each of its invoices, and kept in each verdict's audit.
    dated: tuple[date, date] | None = None

    @property
    def asked_total(self) -> Decimal | None:
        """The total the stores are asked for, dated within `dated`; None: none."""
        return self.total_amount if self.dated is not None else None

    def dated_within(self, day: date | None) -> bool:
        return self.dated is not None and day is not None and self.dated[0] <= day <= self.dated[1]


def lookup_for(document: Mapping[str, Any] | Any) -> Lookup | None:
    """From an invoice document as received, valid or not; None when it names no vendor or number
    a store could hold."""
    if not isinstance(document, Mapping):
        return None
    vendor, number = document.get("vendor_id"), document.get("invoice_number")
    if not isinstance(vendor, str) or not isinstance(number, str) or not vendor.strip() or not number.strip():
        return None
    if any("\x00" in text or len(text) > 64 for text in (vendor, number)):
        return None  # no store holds such a value: nothing to look up
    try:
        amount = Decimal(str(document.get("total_amount")))
        total = amount if amount.is_finite() and _stored_whole(amount) else None
    except (InvalidOperation, ValueError):
        total = None
    return Lookup(identifier_key(vendor), identifier_key(number), loose_number_key(number), total, vendor, number)


def _stored_whole(amount: Decimal) -> bool:
    """Whether the stores' NUMERIC(18, 4) holds the total: 14 digits before the point once it is
    rounded half-up to 4 after it, as PostgreSQL and SQL Server round it. 99999999999999.99999 is
    under 10^14 but rounds to it: its row was refused (numeric overflow), the verdict dead-lettered,
    and every duplicate lookup of a batch with it failed. Bounded first: `quantize` of a number past
    the context's 28 digits raises."""
    return amount.copy_abs() < 10**14 and amount.quantize(Decimal("0.0001"), ROUND_HALF_UP).copy_abs() < 10**14


def lookups_for(documents: Iterable[Any], policy: Policy) -> set[Lookup]:
    """What the stores are asked for the invoices: each one's number, and its total dated within the
    window of days its vendor's policy gives the same-total check (`duplicate_window_days`). A
    document without a readable date asks no total: it is no invoice the checks judge."""
    found = set()
    for document in documents:
        lookup = lookup_for(document)
        if lookup is None:
            continue
        dated = invoice_date(document)
        if lookup.total_amount is not None and dated is not None:
            days = policy.for_vendor(lookup.vendor_id).duplicate_window_days
            lookup = replace(lookup, dated=days_around(dated, days))
        found.add(lookup)
    return found


def days_around(day: date, days: int) -> tuple[date, date]:
    """The dates within `days` of `day`, both ends included, as the same-total check counts them
    (`looks_alike`); cut at the calendar's ends, past which Python has no date."""
    ordinal = day.toordinal()
    return date.fromordinal(max(1, ordinal - days)), date.fromordinal(min(date.max.toordinal(), ordinal + days))


def counts(earlier: KnownInvoice, invoice: Invoice) -> bool:
    """An earlier invoice that could make this one a duplicate: another invoice id, processed."""
    return earlier.invoice_id != invoice.invoice_id and earlier.status not in NOT_PROCESSED


@dataclass(frozen=True, slots=True)
class NumberKeys:
    """An invoice's vendor and number as the checks compare them, made once per invoice judged,
    not once per earlier invoice it is compared with."""

    vendor: str
    number: str
    loose: str

    @classmethod
    def of(cls, invoice: Invoice, identifiers: IdentifierRules) -> NumberKeys:
        return cls(identifiers.key("vendor_id", invoice.vendor_id),
                   identifiers.key("invoice_number", invoice.invoice_number), loose_number_key(invoice.invoice_number))


def same_number(earlier: KnownInvoice, keys: NumberKeys, identifiers: IdentifierRules) -> bool:
    return (identifiers.key("vendor_id", earlier.vendor_id) == keys.vendor
            and identifiers.key("invoice_number", earlier.invoice_number) == keys.number)


def looks_alike(
    earlier: KnownInvoice, invoice: Invoice, keys: NumberKeys, identifiers: IdentifierRules, window_days: int,
) -> str | None:
    """Why a person should look at the earlier invoice (a near number, or the same total close in
    time), or None; only for invoices that are not exact duplicates."""
    if identifiers.key("vendor_id", earlier.vendor_id) != keys.vendor or same_number(earlier, keys, identifiers):
        return None
    if keys.loose and loose_number_key(earlier.invoice_number) == keys.loose:  # "" : no letter or digit to compare
        return "number"
    if (earlier.total_amount is not None and earlier.total_amount == invoice.total_amount
            and _within_days(earlier.invoice_date, invoice.invoice_date, window_days)):
        return "total"
    return None


def _within_days(earlier: date | None, dated: date, days: int) -> bool:
    return earlier is not None and abs((dated - earlier).days) <= days


def may_be_duplicate(
    earlier: KnownInvoice, invoice: Invoice, keys: NumberKeys, identifiers: IdentifierRules, window_days: int,
) -> bool:
    """Whether the duplicate checks can find anything in the earlier invoice: it counts, and has the
    same number, or looks alike (a near number, or the same total within the window). Only these
    are compared and kept in the verdict's audit, which a replay judges again by: kept whole, a
    flat-fee vendor's years of invoices of one total went into every verdict of it, and into the
    ledger of each PO that held one."""
    return counts(earlier, invoice) and (same_number(earlier, keys, identifiers)
                                         or looks_alike(earlier, invoice, keys, identifiers, window_days) is not None)


def known_from(invoice_id: str, status: str, document: Mapping[str, Any] | Any) -> KnownInvoice | None:
    """An invoice this batch just decided, as later invoices of the batch must see it."""
    found = lookup_for(document)
    if found is None:
        return None
    return KnownInvoice(invoice_id, found.vendor_id, found.invoice_number, status, found.total_amount,
                        invoice_date(document))


def invoice_date(document: Mapping[str, Any]) -> date | None:
    """The document's invoice date when it is one."""
    value = document.get("invoice_date")
    try:
        return date.fromisoformat(value) if isinstance(value, str) else value if isinstance(value, date) else None
    except ValueError:
        return None


def matches_lookup(candidate: KnownInvoice, lookups: Iterable[Lookup]) -> bool:
    """What a store returns for the lookups: the same vendor, and the same number, loose number or
    total dated within the lookup's window (the exact comparisons are the checks')."""
    vendor, number = identifier_key(candidate.vendor_id), identifier_key(candidate.invoice_number)
    loose = loose_number_key(candidate.invoice_number)
    return any(vendor == lookup.vendor_key and (number == lookup.number_key or (loose and loose == lookup.loose_key)
                                                or (lookup.asked_total is not None
                                                    and candidate.total_amount == lookup.asked_total
                                                    and lookup.dated_within(candidate.invoice_date)))
               for lookup in lookups)


def hand_off_key(payload: RpaPayload, identifiers: IdentifierRules) -> str:
    """The vendor and invoice number, as DUPLICATE_INVOICE compares them, that no two invoices
    handed to the RPA bot may share; a digest, so that identifiers of any length fit one column."""
    vendor = identifiers.key("vendor_id", payload.vendor_id)
    number = identifiers.key("invoice_number", payload.invoice_number)
    return hashlib.sha256(f"{vendor}\x00{number}".encode()).hexdigest()


def invoice_key(invoice_id: str) -> str:
    """The key each version of an invoice takes beside its vendor's number when it is handed to the
    RPA bot (`hand_off_refused_by`): an edit may change the number and the PO both. Its NULs keep it
    apart from every `hand_off_key`, whose number never holds a control character."""
    return hashlib.sha256(f"\x00invoice\x00{invoice_id}".encode()).hexdigest()


def hand_off_refused_by(claimant: tuple[str, int], holders: Iterable[tuple[str, int] | None],
                        statuses: Mapping[tuple[str, int], str | None],
                        replaces: int | None = None) -> tuple[str, int] | None:
    """The invoice version that keeps the claimant from the RPA bot, or None to hand it over: the
    first of the holders of its keys (its vendor's number, then its invoice id; None: free) that
    is another invoice version and still keeps it (`keeps_its_number`)."""
    for holder in holders:
        if holder is not None and holder != claimant and keeps_its_number(
                holder_status(holder, claimant[0], statuses, replaces)):
            return holder
    return None


GIVE_UP_THEIR_NUMBER = frozenset({InvoiceStatus.WITHDRAWN.value, InvoiceStatus.SUPERSEDED.value})


def keeps_its_number(status: str | None) -> bool:
    """Whether an invoice version handed over before, now at this status, still holds its vendor's
    invoice number: unless it was withdrawn or superseded since (None: not yet in processscheduler).
    Against another version of the same invoice as against another invoice: a status that may
    still change (a failed hand-off AP may release) keeps it, as processscheduler may show it a
    moment late. Rejected (bad_invoice, po_not_found) it can only have been before its hand-off, as
    nothing judges an invoice the bot has again: that status is processscheduler behind (it was
    judged ready again after po_not_found, and another invoice of its number went to the bot too)."""
    return status not in GIVE_UP_THEIR_NUMBER


def holder_status(holder: tuple[str, int], claimant: str, statuses: Mapping[tuple[str, int], str | None],
                  replaces: int | None = None) -> str | None:
    """The status `keeps_its_number` weighs for the invoice version holding a key: its own, not its
    invoice's newest (a newer version withdrawn or rejected does not take back an older one that
    is in Sampro; None: processscheduler has not recorded it yet). `replaces`: the version of its
    own invoice the claimant's PO agent superseded for it, in the step that handed it over;
    superseded, whether or not processscheduler shows it yet."""
    if holder[0] == claimant and holder[1] == replaces:
        return InvoiceStatus.SUPERSEDED.value
    return statuses.get(holder)


def handed_over_already(payload: RpaPayload, holder: tuple[str, int]) -> str:
    """Why an invoice was not handed to the RPA bot: its number went to the bot with another invoice,
    or with another version of this one."""
    if holder[0] == payload.invoice_id:
        return (f"DUPLICATE_INVOICE: not handed to the RPA bot. Version {holder[1]} of this invoice went to it "
                "already, and processscheduler did not show it withdrawn or superseded. Release this "
                "one once it does; if that version was entered, a clerk who voids the entry enters this one by hand.")
    return (f"DUPLICATE_INVOICE: not handed to the RPA bot. Vendor {payload.vendor_id} invoice "
            f"{payload.invoice_number} went to it already as {holder[0]} (version {holder[1]}); if this is "
            "another invoice, the vendor must send it under a number of its own.")
