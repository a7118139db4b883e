"""Matching tolerances: defaults plus per-vendor overrides, loaded from a TOML file.

All tolerances default to zero, the exact matching AP uses today. Example:

    [default]
    price_pct = "0"          # % of the PO unit price
    price_abs = "0.00"       # currency units per unit
    total_abs = "0.00"       # on the invoice total
    quantity_pct = "0"       # % over the open quantity
    three_way_match = false  # also check received quantities (QUANTITY_EXCEEDS_RECEIVED)

    [vendors.V100]
    price_pct = "1.5"
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

ZERO = Decimal(0)


class PolicyError(ValueError):
    """A tolerances file that cannot be used, naming the key and the value."""


@dataclass(frozen=True, slots=True)
class Tolerance:
    price_pct: Decimal = ZERO
    price_abs: Decimal = ZERO
    total_abs: Decimal = ZERO
    quantity_pct: Decimal = ZERO
    three_way_match: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    default: Tolerance = Tolerance()
    vendors: dict[str, Tolerance] = field(default_factory=dict)
    _digest: str | None = field(default=None, init=False, compare=False, repr=False)

    def for_vendor(self, vendor_id: str | None) -> Tolerance:
        return self.vendors.get(vendor_id or "", self.default)

    def digest(self) -> str:
        """Short fingerprint of every tolerance, so a verdict says which set judged it."""
        def text(tolerance: Tolerance) -> str:
            return ",".join(f"{key}={value.normalize():f}" if isinstance(value, Decimal) else f"{key}={value}"
                            for key, value in asdict(tolerance).items())

        if self._digest is None:
            canonical = ";".join([text(self.default), *(f"{v}:{text(t)}" for v, t in sorted(self.vendors.items()))])
            object.__setattr__(self, "_digest", hashlib.sha256(canonical.encode()).hexdigest()[:8])
        return self._digest


_DECIMAL_KEYS = ("price_pct", "price_abs", "total_abs", "quantity_pct")


def _tolerance(table: Any, base: Tolerance, where: str) -> Tolerance:
    if not isinstance(table, dict):
        raise PolicyError(f"{where}: expected a table, got {table!r}")
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key in _DECIMAL_KEYS:
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise PolicyError(f"{where}.{key}: expected a number, got {value!r}")
            try:
                # A TOML float is turned into text first so 0.1 stays 0.1, not its binary neighbour.
                number = Decimal(str(value))
            except InvalidOperation:
                raise PolicyError(f"{where}.{key}: not a number: {value!r}") from None
            if not number.is_finite() or number < 0:
                raise PolicyError(f"{where}.{key}: must be a finite number >= 0, got {value!r}")
            changes[key] = number
        elif key == "three_way_match":
            if not isinstance(value, bool):
                raise PolicyError(f"{where}.three_way_match: expected true or false, got {value!r}")
            changes[key] = value
        else:
            raise PolicyError(f"{where}.{key}: unknown setting (value {value!r})")
    return replace(base, **changes)


def parse_policy(document: dict[str, Any], source: str = "tolerances") -> Policy:
    unknown = set(document) - {"default", "vendors"}
    if unknown:
        raise PolicyError(f"{source}: unknown section(s) {sorted(unknown)}")
    default = _tolerance(document.get("default", {}), Tolerance(), f"{source}: default")
    vendors_table = document.get("vendors", {})
    if not isinstance(vendors_table, dict):
        raise PolicyError(f"{source}: vendors: expected a table, got {vendors_table!r}")
    vendors = {
        vendor: _tolerance(table, default, f"{source}: vendors.{vendor}") for vendor, table in vendors_table.items()
    }
    return Policy(default=default, vendors=vendors)


def load_policy(path: Path) -> Policy:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    return parse_policy(document, str(path))
