"""One invoice laid beside its PO: the matching every rule shares, worked out once, up front.

Matching, as AP systems match (one line matcher for the rules and the payload alike):

- an invoice line's *candidates* are the PO lines of the same part (identifiers compared as
  `rules.identifiers` says); none is PART_NOT_ON_PO;
- of those, the line *matches* the ones at its price within the price tolerance; none is
  PRICE_MISMATCH, named against the candidate of the nearest price, which is then used for the
  quantity checks so that those still run;
- its quantity is placed on the matched PO lines, the nearest in price first (then in line
  order: a tolerance widens the match, it does not choose the line), first up to what each still has
  open (ordered - invoiced in Sampro - at the RPA bot - placed by earlier lines of this invoice),
  then into each line's quantity tolerance; under three-way match, what each has received and
  not yet invoiced comes first, then its received tolerance, then what is open. What is left over
  is QUANTITY_EXCEEDS_OPEN on the PO line it would overflow, never a silent spread onto a line at
  another price;
- the RPA payload has one line per invoice line and PO line it was placed on.

Plain attributes rather than lazy properties: `evaluate` runs tens of thousands of times a
second, and every rule that has a PO needs this matching anyway.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from operator import attrgetter

from rules.context import EvaluationContext, KnownInvoice
from rules.duplicates import NumberKeys, may_be_duplicate
from rules.models import Finding, Invoice, InvoiceLine, PurchaseOrder, PurchaseOrderLine, Severity, trusted
from rules.money import minor_unit
from rules.policy import Tolerance

ZERO = Decimal(0)
_LINE_NO = attrgetter("line_no")
# The rooms of a PO line a quantity is placed into, pass by pass (`Case._place`).
_RECEIVED, _OPEN, _TOLERANCE = "received and not yet invoiced", "open", "open and the quantity tolerance"
_RECEIVED_TOLERANCE = "received and not yet invoiced, and the received tolerance"
_TWO_WAY, _THREE_WAY = (_OPEN, _TOLERANCE), (_RECEIVED, _RECEIVED_TOLERANCE, _OPEN, _TOLERANCE)
# On one PO line the received tolerance chooses nothing: it would only split what goes there anyway,
# and 2 + 0.3 + 6.7 placed read "9.0" in the findings, where they read "9".
_THREE_WAY_ONE_LINE = (_RECEIVED, _OPEN, _TOLERANCE)


class LineMatch:
    """Where one invoice line went on the PO."""

    __slots__ = ("line", "tolerance", "part", "candidates", "matched", "nearest", "placed", "left_over")

    def __init__(self, line: InvoiceLine, tolerance: Tolerance, part: _PartLines):
        self.line, self.tolerance, self.part, self.candidates = line, tolerance, part, part.lines
        # Shared by the lines of the part at the same price: never changed once made.
        self.matched, self.nearest = part.at(line.unit_price, tolerance)
        self.placed: list[tuple[PurchaseOrderLine, Decimal]] = []  # (PO line, quantity put on it)
        self.left_over = ZERO  # quantity no matched PO line had room for, even with the tolerance

    @property
    def targets(self) -> list[PurchaseOrderLine]:
        """The PO lines its quantity goes to: the matched ones, else the nearest by price."""
        return self.matched or ([self.nearest] if self.nearest is not None else [])


class _PartLines:
    """One part's PO lines, grouped by price. A blanket PO repeats a part on hundreds of schedule
    lines, and an invoice of as many lines was compared line by line with each (1,000 by 1,000:
    1.9 s): each invoice price is now compared with each PO price once."""

    __slots__ = ("lines", "by_price", "seen", "full")

    def __init__(self) -> None:
        self.lines: list[PurchaseOrderLine] = []  # in line order
        self.by_price: dict[Decimal, list[PurchaseOrderLine]] = {}  # each in line order
        self.seen: dict[Decimal, tuple[list[PurchaseOrderLine], PurchaseOrderLine | None]] = {}
        # (price, pass) -> where that pass last stopped on the PO lines matched at that price (`Case._place`)
        self.full: dict[tuple[Decimal, str], int] = {}

    def add(self, po_line: PurchaseOrderLine) -> None:
        self.lines.append(po_line)
        self.by_price.setdefault(po_line.unit_price, []).append(po_line)

    def at(self, price: Decimal, tolerance: Tolerance) -> tuple[list[PurchaseOrderLine], PurchaseOrderLine | None]:
        """The PO lines at `price` within the price tolerance, the nearest in price first (then in
        line order: a tolerance only widens the match), and the nearest of all in price. One
        tolerance per part and vendor, so the price alone keys what was worked out."""
        if (found := self.seen.get(price)) is not None:
            return found
        matched: list[PurchaseOrderLine] = []
        nearest: PurchaseOrderLine | None = None
        nearest_by = ZERO
        for po_price, lines in self.by_price.items():
            if tolerance.price_allowed(po_price, price):
                matched.extend(lines)
            distance = abs(po_price - price)
            if nearest is None or (distance, lines[0].line_no) < (nearest_by, nearest.line_no):
                nearest, nearest_by = lines[0], distance
        if len(matched) > 1:
            matched.sort(key=lambda c: (abs(c.unit_price - price), c.line_no))
        self.seen[price] = found = (matched, nearest)
        return found


def _allowance(room_by: str, po_line: PurchaseOrderLine, tolerance: Tolerance) -> Decimal:
    """How far past what a PO line has open a pass may place on it; less than nothing, short of it."""
    if room_by is _TOLERANCE:
        return tolerance.quantity_allowance(po_line.quantity_ordered)
    if room_by is _OPEN or po_line.quantity_received is None:
        return ZERO
    undelivered = max(ZERO, po_line.quantity_ordered - po_line.quantity_received)
    if room_by is _RECEIVED:
        return -undelivered
    # Into the received tolerance, as far as the quantity tolerance lets it pass the order.
    return min(tolerance.received_allowance(po_line.quantity_received) - undelivered,
               tolerance.quantity_allowance(po_line.quantity_ordered))


def _choice(match: LineMatch) -> tuple[int, bool]:
    """Placed first: a line matching fewer PO lines, then one at a PO line's very price. (At its very
    price first, a line that could also go on another PO line took the one a line after it could
    only go on.)"""
    matched = match.matched  # the nearest in price first
    return len(matched), not (matched and matched[0].unit_price == match.line.unit_price)


class Case:
    __slots__ = (
        "invoice", "po", "context", "contract_problems", "vendor_key", "minor_unit", "tolerance", "computed_amounts",
        "line_amounts", "subtotal", "matches", "placed_on", "open_on", "overflowed", "earlier", "number_keys",
    )

    def __init__(
        self,
        invoice: Invoice | None,
        po: PurchaseOrder | None,
        context: EvaluationContext,
        contract_problems: list[Finding] | None = None,
    ):
        self.invoice = invoice
        self.po = po
        self.context = context
        self.contract_problems = contract_problems or []
        identifiers = context.policy.identifiers
        # Each identifier is made a key once per case: the tolerances and the matching all use it.
        self.vendor_key = identifiers.key("vendor_id", invoice.vendor_id) if invoice is not None else ""
        self.tolerance: Tolerance = context.policy.for_keys(self.vendor_key, None)
        self.minor_unit: Decimal | None = None
        self.computed_amounts: list[Decimal] = []
        self.line_amounts: list[Decimal] = []
        self.subtotal = ZERO  # of line_amounts: the total, the tax and the payload all start from it
        self.matches: list[LineMatch] = []
        self.placed_on: dict[int, Decimal] = {}  # PO line -> quantity this invoice puts on it
        self.open_on: dict[int, Decimal] = {}  # PO line -> what it had open before this invoice
        self.overflowed: dict[int, int] = {}  # PO line -> the first invoice line that overflowed it
        # The invoices seen before in which the duplicate checks may find this one (`may_be_duplicate`),
        # and its audit records.
        self.earlier: list[KnownInvoice] = []
        self.number_keys: NumberKeys | None = None  # its own, made once for both checks; None: nothing to compare
        if invoice is not None:
            earlier = context.earlier_like(invoice.vendor_id, invoice.invoice_number, invoice.total_amount)
            if earlier:  # most invoices: no keys to make
                self.number_keys = keys = NumberKeys.of(invoice, identifiers)
                window = self.tolerance.duplicate_window_days
                self.earlier = [known for known in earlier
                                if may_be_duplicate(known, invoice, keys, identifiers, window)]
            # Quantity x price, rounded; and the amount each line stands for: as stated, or that.
            self.minor_unit = unit = minor_unit(invoice.currency)
            self.computed_amounts = [(line.quantity * line.unit_price).quantize(unit, rounding=ROUND_HALF_UP)
                                     for line in invoice.lines]
            self.line_amounts = [line.amount if line.amount is not None else computed
                                 for line, computed in zip(invoice.lines, self.computed_amounts, strict=True)]
            self.subtotal = sum(self.line_amounts, ZERO)
        if invoice is not None and po is not None:
            self._match(invoice, po)

    def _match(self, invoice: Invoice, po: PurchaseOrder) -> None:
        policy, in_flight = self.context.policy, self.context.in_flight
        key = policy.identifiers.key
        by_part: dict[str, _PartLines] = {}
        for po_line in sorted(po.lines, key=_LINE_NO):
            if (part_lines := by_part.get(part := key("part_number", po_line.part_number))) is None:
                by_part[part] = part_lines = _PartLines()
            part_lines.add(po_line)
            self.open_on[po_line.line_no] = (po_line.quantity_ordered - po_line.quantity_invoiced
                                             - in_flight.get(str(po_line.line_no), ZERO))
        for line in invoice.lines:
            part = key("part_number", line.part_number)
            tolerance = policy.for_keys(self.vendor_key, part)
            self.matches.append(LineMatch(line, tolerance, by_part.get(part) or _PartLines()))
        if any(len(match.matched) > 1 for match in self.matches):
            # Lines with a choice of PO lines are placed after those without one: placed in invoice order,
            # a line that could go on two took the one the next line could only go on, and whether the
            # invoice was held depended on the order of its lines.
            for match in sorted(self.matches, key=_choice):
                self._place(match)
        else:
            for match in self.matches:
                self._place(match)

    def _place(self, match: LineMatch) -> None:
        """First what each matched PO line has open, then its quantity tolerance, nearest in price
        first; under three-way match, what each has received and not yet invoiced before that, as
        Oracle and Coupa match to the receipt: an invoice for goods delivered on PO line 2 was put
        on undelivered line 1 and waited for a receipt that was never needed. Then, before what is
        open, each line's received tolerance (within its quantity tolerance): 11 on a PO whose line
        2 had received its 10, with 10 % of leeway on receipts, put the 11th on undelivered line 1,
        held for a receipt, where the same invoice against line 2 alone was ready."""
        targets = match.targets
        if not targets:
            return
        open_on, placed_on = self.open_on, self.placed_on
        if len(targets) == 1:  # the usual one PO line, with room for the whole quantity: all goes there
            po_line, quantity = targets[0], match.line.quantity
            before = placed_on.get(po_line.line_no, ZERO)
            if 0 < quantity <= open_on[po_line.line_no] - before:
                placed_on[po_line.line_no] = before + quantity
                match.placed = [(po_line, quantity)]
                return
        left, placed = match.line.quantity, dict[int, Decimal]()  # index in targets -> quantity put there
        passes = (_TWO_WAY if not match.tolerance.three_way_match else _THREE_WAY if len(targets) > 1
                  else _THREE_WAY_ONE_LINE)
        price, full = match.line.unit_price, match.part.full
        for room_by in passes:
            if left <= 0:  # all placed within what is open: the tolerance has nothing to take
                break
            # The PO lines before where this pass last stopped for this part at this price have no
            # room left in it: each was filled, and rooms only shrink as the case places (a blanket
            # PO's 1,000 schedule lines were each walked again for each invoice line).
            stop = len(targets)
            for index in range(full.get((price, room_by), 0), stop):
                po_line = targets[index]
                line_no = po_line.line_no
                if room_by in (_RECEIVED, _RECEIVED_TOLERANCE) and po_line.unit_price != targets[0].unit_price:
                    continue  # a receipt does not pick the line: a tolerance's other price waits its turn
                free = open_on[line_no] + _allowance(room_by, po_line, match.tolerance) - placed_on.get(line_no, ZERO)
                if free <= 0:
                    continue
                take = free if free < left else left  # min(left, free), without a call per line
                placed[index] = placed.get(index, ZERO) + take
                placed_on[line_no] = placed_on.get(line_no, ZERO) + take
                left -= take
                if left <= 0:  # this line may have room still
                    stop = index
                    break
            full[price, room_by] = stop
        if left > 0:  # no matched line has room for it: it stays on the nearest in price, reported there
            last = targets[0].line_no
            placed[0] = placed.get(0, ZERO) + left
            placed_on[last] = placed_on.get(last, ZERO) + left
            self.overflowed.setdefault(last, match.line.line_no)
            match.left_over = left
        match.placed = [(targets[index], placed[index]) for index in sorted(placed)]

    @property
    def parsed_invoice(self) -> Invoice:
        """The invoice, for the rules that need one: the rule table runs them only when it parsed."""
        if self.invoice is None:
            raise LookupError("this rule needs a parsed invoice (rules.table: needs_invoice)")
        return self.invoice

    @property
    def found_po(self) -> PurchaseOrder:
        """The PO snapshot, for the rules that need one: the rule table runs them only when Sampro has it."""
        if self.po is None:
            raise LookupError("this rule needs the PO snapshot (rules.table: needs_po)")
        return self.po

    def money(self, amount: Decimal) -> Decimal:
        """Half-up at the invoice currency's precision, as `rules.money.round_money` rounds."""
        if self.minor_unit is None:
            raise LookupError("money needs a parsed invoice's currency (rules.table: needs_invoice)")
        return amount.quantize(self.minor_unit, rounding=ROUND_HALF_UP)


def finding(
    code: str,
    severity: Severity,
    message: str,
    *,
    line_no: int | None = None,
    field: str | None = None,
    expected: object = None,
    actual: object = None,
) -> Finding:
    return trusted(Finding, {  # every value is a str, an int or None already
        "code": code,
        "severity": severity,
        "line_no": line_no,
        "field": field,
        "expected": None if expected is None else str(expected),
        "actual": None if actual is None else str(actual),
        "message": message,
    })
