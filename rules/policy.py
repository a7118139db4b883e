"""Matching tolerances as AP configures them, from a TOML file: `[default]`, then per vendor and per
part, each section taking over what it sets from the one above it.

All tolerances default to zero, the exact matching AP uses today. Example:

    [default]
    price_pct = "0"            # unit price above the PO price: % of the PO price ...
    price_abs = "0.00"         # ... and/or currency units; with both, the stricter wins
    price_lower_pct = "0"      # the same below the PO price
    price_lower_abs = "0.00"
    quantity_pct = "0"         # everything invoiced on a PO line may pass its ordered quantity
    quantity_abs = "0"         #   by this % of it and/or this many units (the stricter wins)
    three_way_match = false    # also check received quantities (QUANTITY_EXCEEDS_RECEIVED)
    received_pct = "0"         #   invoiced may pass received by this % of it
    tax_abs = "0.00"           # rounding differences accepted on the tax
    total_abs = "0.00"         # a total difference up to this is accepted and noted in the payload
    duplicate_window_days = 30 # same vendor and total within this many days: POSSIBLE_DUPLICATE

    [identifiers]
    case_sensitive = []        # fields compared with their letter case: part_number, vendor_id, ...

    [parts."AC-100"]           # for this part, whoever the vendor
    price_pct = "1"

    [vendors.V100]             # for this vendor
    price_pct = "1.5"

    [vendors.V100.parts."AC-100"]   # for this vendor's part
    quantity_abs = "2"

When both kinds of one limit are set, a value must be within both. In `[default]`, a zero
percentage or amount is no tolerance of that kind, as an absent one is; in a part's or vendor's
section, a zero is no leeway of that kind (`price_abs = "0"` keeps the vendor's prices at the PO's,
whatever percentage `[default]` gives) unless the same section gives the other kind a leeway, and
an absent key is the section above's. A
line's tolerance is `[default]`, then `[parts.P]`, then `[vendors.V]`, then `[vendors.V.parts.P]`,
later sections overriding the keys they set. Vendor ids and part numbers are matched as identifiers
are (see `rules.identifiers`), so two sections for one of them (`[vendors.V100]` and `[vendors.v100]`)
are refused. `tax_abs`, `total_abs` and `duplicate_window_days` are the
invoice's, not a line's: only `[default]` and `[vendors.V]` set them.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rules.identifiers import FIELDS, IdentifierRules
from rules.limits import Limits, decimal_problem

ZERO = Decimal(0)
HUNDRED = Decimal(100)
# The finest quantity Sampro keeps (numeric(18, 4)): a quantity tolerance is so many of these. 5 % of
# 2.125 ordered (0.10625) placed 2.23125 on a PO line, in the RPA payload, which Sampro cannot key.
QUANTITY_PLACES = Limits().max_fraction_digits
QUANTITY_STEP = Decimal(1).scaleb(-QUANTITY_PLACES)


class PolicyError(ValueError):
    """A tolerances file that cannot be used, naming the key and the value."""


def within(base: Decimal, pct: Decimal | None, absolute: Decimal | None) -> Decimal:
    """How far from `base` a value may be: the stricter of the two kinds that are set (None: not
    set; a zero is set, and allows nothing), else 0."""
    if pct is None:
        return ZERO if absolute is None else absolute
    by_pct = base * pct / HUNDRED
    return by_pct if absolute is None or by_pct < absolute else absolute


@dataclass(frozen=True, slots=True)
class Tolerance:
    # Each limit by % and/or amount; None: not set. A zero was taken for not set, and a vendor's
    # price_abs = "0" gave it the whole [default] percentage instead of none.
    price_pct: Decimal | None = None  # above the PO price (the file's old `price_pct` keeps this meaning)
    price_abs: Decimal | None = None
    price_lower_pct: Decimal | None = None
    price_lower_abs: Decimal | None = None
    quantity_pct: Decimal | None = None
    quantity_abs: Decimal | None = None
    three_way_match: bool = False
    received_pct: Decimal = ZERO
    tax_abs: Decimal = ZERO
    total_abs: Decimal = ZERO
    duplicate_window_days: int = 30

    def price_allowed(self, po_price: Decimal, invoiced_price: Decimal) -> bool:
        if invoiced_price >= po_price:
            return invoiced_price - po_price <= within(po_price, self.price_pct, self.price_abs)
        return po_price - invoiced_price <= within(po_price, self.price_lower_pct, self.price_lower_abs)

    def quantity_allowance(self, ordered: Decimal) -> Decimal:
        """How many units everything invoiced on a PO line may pass its ordered quantity by, in
        quantities Sampro keeps (down: a quantity past the tolerance is never let through)."""
        return _kept(within(ordered, self.quantity_pct, self.quantity_abs))

    def received_allowance(self, received: Decimal) -> Decimal:
        return _kept(received * self.received_pct / HUNDRED)


def _kept(quantity: Decimal) -> Decimal:
    """Down to a quantity Sampro keeps; one it keeps already as it is (2, not 2.0000, in findings)."""
    exponent = quantity.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -QUANTITY_PLACES:
        return quantity.quantize(QUANTITY_STEP, rounding=ROUND_FLOOR)
    return quantity


# As Sampro keeps amounts (numeric(18, 4)), with room for a finer percentage.
TOLERANCE_DIGITS = Limits(max_integer_digits=14, max_fraction_digits=8)
_DECIMALS = tuple(f.name for f in fields(Tolerance) if f.type in ("Decimal", "Decimal | None"))
_LIMITS = tuple(f.name for f in fields(Tolerance) if f.type == "Decimal | None")


def _default(tolerance: Tolerance) -> Tolerance:
    """`[default]` as documented: a zero limit there is none set. Files spell every key out as "0"
    (samples/tolerances.toml): taken as no leeway, that price_abs = "0" would hold the 2 % of
    [vendors.V300] to nothing."""
    unset: dict[str, Any] = {name: None for name in _LIMITS if getattr(tolerance, name) == 0}
    return replace(tolerance, **unset) if unset else tolerance


@dataclass(frozen=True)
class Policy:
    """The sections as the file sets them: each a dict of only the keys it sets."""

    default: Tolerance = Tolerance()
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    vendors: dict[str, dict[str, Any]] = field(default_factory=dict)
    vendor_parts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    identifiers: IdentifierRules = IdentifierRules()
    if TYPE_CHECKING:  # set in __post_init__; not dataclass fields (no init, repr or comparison of their own)
        _fingerprint: str = field(init=False, repr=False, compare=False)
        _tailored: bool = field(init=False, repr=False, compare=False)
        matches_receipts: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Sections are found by identifier keys, however the caller spelled the vendor or part.
        key = self.identifiers.key
        object.__setattr__(self, "default", _default(self.default))
        object.__setattr__(self, "parts", {key("part_number", p): dict(s) for p, s in self.parts.items()})
        object.__setattr__(self, "vendors", {key("vendor_id", v): dict(s) for v, s in self.vendors.items()})
        object.__setattr__(self, "vendor_parts", {(key("vendor_id", v), key("part_number", p)): dict(s)
                                                  for (v, p), s in self.vendor_parts.items()})
        object.__setattr__(self, "_fingerprint", _digest(self))
        # Without sections every line gets [default]: no identifier keys to make, no cache to ask.
        object.__setattr__(self, "_tailored", bool(self.parts or self.vendors or self.vendor_parts))
        # Whether any line may be matched against receipts (3-way): most AP sets none, and the
        # check then has no PO line to look at.
        sections = (*self.parts.values(), *self.vendors.values(), *self.vendor_parts.values())
        object.__setattr__(self, "matches_receipts", self.default.three_way_match
                           or any(section.get("three_way_match") for section in sections))

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self._fingerprint == other._fingerprint

    def for_vendor(self, vendor_id: str | None) -> Tolerance:
        return self.for_line(vendor_id, None)

    def for_line(self, vendor_id: str | None, part_number: str | None) -> Tolerance:
        if not self._tailored:
            return self.default
        vendor = self.identifiers.key("vendor_id", vendor_id) if vendor_id else None
        part = self.identifiers.key("part_number", part_number) if part_number else None
        return _resolve(self, vendor, part)

    def for_keys(self, vendor: str | None, part: str | None) -> Tolerance:
        """`for_line` for identifier keys already made (a case makes each one once); None or ""
        for no vendor or no part."""
        if not self._tailored:
            return self.default
        return _resolve(self, vendor or None, part or None)

    def digest(self) -> str:
        """Short fingerprint of every tolerance, so a verdict says which set judged it."""
        return self._fingerprint


@lru_cache(maxsize=4096)
def _resolve(policy: Policy, vendor: str | None, part: str | None) -> Tolerance:
    tolerance = policy.default
    for section in (policy.parts.get(part or ""), policy.vendors.get(vendor or ""),
                    policy.vendor_parts.get((vendor or "", part or ""))):
        if section:
            tolerance = replace(tolerance, **section)
    return tolerance


def _digest(policy: Policy) -> str:
    def text(values: dict[str, Any]) -> dict[str, str]:
        return {key: f"{value.normalize():f}" if isinstance(value, Decimal) else str(value)
                for key, value in sorted(values.items())}

    canonical = json.dumps({
        "default": text({f.name: getattr(policy.default, f.name) for f in fields(Tolerance)}),
        "parts": {k: text(v) for k, v in sorted(policy.parts.items())},
        "vendors": {k: text(v) for k, v in sorted(policy.vendors.items())},
        "vendor_parts": {f"{v}/{p}": text(s) for (v, p), s in sorted(policy.vendor_parts.items())},
        "case_sensitive": sorted(policy.identifiers.case_sensitive),
    }, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def _section(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise PolicyError(f"{where}: expected a table, got {table!r}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _DECIMALS:
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise PolicyError(f"{where}.{key}: expected a number, got {value!r}")
            try:
                # A TOML float is turned into text first so 0.1 stays 0.1, not its binary neighbour.
                number = Decimal(str(value))
            except InvalidOperation:
                raise PolicyError(f"{where}.{key}: not a number: {value!r}") from None
            if not number.is_finite() or number < 0:
                raise PolicyError(f"{where}.{key}: must be a finite number >= 0, got {value!r}")
            # 1e999999999 passed, and the rules' fingerprint of it (a billion digits) overflowed at start.
            if decimal_problem(number, TOLERANCE_DIGITS) is not None:
                raise PolicyError(f"{where}.{key}: at most {TOLERANCE_DIGITS.max_integer_digits} digits before the "
                                  f"point and {TOLERANCE_DIGITS.max_fraction_digits} after it, got {value!r}")
            values[key] = number
        elif key == "three_way_match":
            if not isinstance(value, bool):
                raise PolicyError(f"{where}.three_way_match: expected true or false, got {value!r}")
            values[key] = value
        elif key == "duplicate_window_days":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3650:
                raise PolicyError(f"{where}.duplicate_window_days: expected whole days from 0 to 3650, got {value!r}")
            values[key] = value
        else:
            raise PolicyError(f"{where}.{key}: unknown setting (value {value!r})")
    return _zero_beside_leeway_unset(values)


LIMIT_PAIRS = (("price_pct", "price_abs"), ("price_lower_pct", "price_lower_abs"), ("quantity_pct", "quantity_abs"))


def _zero_beside_leeway_unset(values: dict[str, Any]) -> dict[str, Any]:
    """A zero beside a leeway of the other kind in the same section is not set, as the samples'
    style writes every key: read as no leeway (the stricter of the two), `price_pct = "0"` beside
    `price_abs = "1.00"` under a vendor took away the 1.00 it had always allowed. A zero alone in a
    section is no leeway of that kind, whatever the section above allows."""
    for pct, absolute in LIMIT_PAIRS:
        for zero, other in ((pct, absolute), (absolute, pct)):
            if values.get(zero) == 0 and values.get(other):
                del values[zero]
    return values


# Judged once per invoice, with its vendor's tolerance (`Case.tolerance`): set in a part's section,
# they were taken without a word and never read.
INVOICE_KEYS = ("tax_abs", "total_abs", "duplicate_window_days")


def _part_section(table: Any, where: str, belongs: str) -> dict[str, Any]:
    """A part's section (`belongs`: where the invoice's own keys go instead)."""
    values = _section(table, where)
    for key in INVOICE_KEYS:
        if key in values:
            raise PolicyError(f"{where}.{key}: judged for the whole invoice, not per part: set it in {belongs} "
                              f"(value {table[key]!r})")
    return values


def _identifiers(table: Any, where: str) -> IdentifierRules:
    if not isinstance(table, dict) or set(table) - {"case_sensitive"}:
        raise PolicyError(f"{where}: expected only case_sensitive = [...], got {table!r}")
    chosen = table.get("case_sensitive", [])
    if not isinstance(chosen, list) or any(name not in FIELDS for name in chosen):
        raise PolicyError(f"{where}.case_sensitive: expected a list of {list(FIELDS)}, got {chosen!r}")
    return IdentifierRules(frozenset(chosen))


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(name: str) -> str:
    """A section's name as a TOML header writes it: bare, or quoted with anything beyond ASCII
    escaped, so that two names told apart only by a composed letter or an unseen mark show it."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def parse_policy(document: dict[str, Any], source: str = "tolerances") -> Policy:
    unknown = set(document) - {"default", "vendors", "parts", "identifiers"}
    if unknown:
        raise PolicyError(f"{source}: unknown section(s) {sorted(unknown)}")
    identifiers = _identifiers(document.get("identifiers", {}), f"{source}: identifiers")
    default = replace(Tolerance(), **_section(document.get("default", {}), f"{source}: default"))

    def keyed(table: Any, where: str, name: str, header: str) -> dict[str, tuple[str, Any]]:
        """`table`'s sections by identifier key, each with its name as written. Two names that are one
        vendor or part as invoices are matched (`[vendors.V100]` and `[vendors.v100]`) are refused:
        kept, the later replaced the earlier whole, and a strict vendor's three_way_match and exact
        prices gave way to a leeway added below under the portal's spelling."""
        if not isinstance(table, dict):
            raise PolicyError(f"{where}: expected a table, got {table!r}")
        sections: dict[str, tuple[str, Any]] = {}
        for written, value in table.items():
            key = identifiers.key(name, written)
            if key in sections:
                earlier, later = (f"[{header}.{_toml_key(spelt)}]" for spelt in (sections[key][0], written))
                raise PolicyError(f"{where}: {earlier} and {later} are one {name.replace('_', ' ')} as invoices are "
                                  "matched (letter case, edge spaces and Unicode form aside): write one section")
            sections[key] = (written, value)
        return sections

    parts = {part: _part_section(table, f"{source}: parts.{part}", "[default] or [vendors.V]")
             for part, (_, table) in keyed(document.get("parts", {}), f"{source}: parts", "part_number",
                                           "parts").items()}
    vendors: dict[str, dict[str, Any]] = {}
    vendor_parts: dict[tuple[str, str], dict[str, Any]] = {}
    for vendor, (vendor_written, table) in keyed(document.get("vendors", {}), f"{source}: vendors", "vendor_id",
                                                 "vendors").items():
        where = f"{source}: vendors.{vendor}"
        table = dict(table) if isinstance(table, dict) else table
        own_parts = table.pop("parts", {}) if isinstance(table, dict) else {}
        vendors[vendor] = _section(table, where)
        for part, (_, part_table) in keyed(own_parts, f"{where}.parts", "part_number",
                                           f"vendors.{_toml_key(vendor_written)}.parts").items():
            vendor_parts[(vendor, part)] = _part_section(part_table, f"{where}.parts.{part}", f"[vendors.{vendor}]")
    return Policy(default=default, parts=parts, vendors=vendors, vendor_parts=vendor_parts, identifiers=identifiers)


MAX_POLICY_BYTES = 1_000_000  # a table of tolerances is kilobytes; a wrong path (a log, /dev/zero) is not read whole


def load_policy(path: Path) -> Policy:
    with path.open("rb") as file:
        data = file.read(MAX_POLICY_BYTES + 1)
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"{path}: more than {MAX_POLICY_BYTES:,} bytes, which no table of tolerances is")
    try:
        # Line ends as a text file's read (CR LF and CR alike): TOML takes no bare CR.
        document = tomllib.loads(data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n"))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text (byte {exc.start}: "
                          f"{exc.object[exc.start:exc.start + 1]!r})") from None
    return parse_policy(document, str(path))

