"""Identifiers as AP reads them: part numbers, vendor ids, invoice numbers and currency codes are the
same when they differ only in edge spaces, Unicode composition or letter case.

SQL Server's default collation, where Sampro lives, already ignores case, so `vlv-310` on the
invoice is `VLV-310` on the PO to everyone in AP. Case folding can be turned off per field in the
tolerances file (`[identifiers] case_sensitive = ["part_number"]`). Verdicts always show the
values as sent; only comparisons use these keys.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

FIELDS = ("part_number", "vendor_id", "invoice_number", "currency")
_NOT_LETTER_OR_DIGIT = re.compile(r"[\W_]+")
_LEADING_ZEROS = re.compile(r"(?<!\d)0+(?=\d)")
# Letters and marks, as Unicode files them, that show nothing: the Hangul fillers, the combining
# grapheme joiner, Khmer's inherent vowels, the Mongolian and other variation selectors; and the
# spaces other than the space, and the braille blank, each of which shows one. Kept, a resend of an
# entered INV-4 as `INV-4\u3164` (a cent more freight) was ready for the RPA bot, and paid twice;
# with the same total a possible duplicate a clerk may release. (Format characters, Cf, go by their
# category.)
_UNSEEN: dict[int, str | None] = {
    ord(c): None for c in "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u3164\uffa0"}
_UNSEEN |= {selector: None for selector in [*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]}
_UNSEEN |= {ord(c): " " for c in "\u00a0\u1680\u202f\u205f\u2800\u3000"} | {c: " " for c in range(0x2000, 0x200B)}


@lru_cache(maxsize=65536)  # vendors and part numbers recur on every invoice; bounded against a flood of new ones
def identifier_key(text: str, fold_case: bool = True) -> str:
    """Without format characters or others that show nothing (`_UNSEEN`), NFC-composed, trimmed
    and (unless told otherwise) case-folded: what two identifiers are compared by. A soft hyphen,
    a zero-width mark or an LRM shows nothing, and `INV-\u200c778` is INV-778 to whoever reads it:
    kept, a resend of an entered invoice with one was a possible duplicate a clerk may release, not
    a duplicate. Taken out before composing: between two accents, a grapheme joiner taken out after
    left them in another order than NFC's, and `INV-A\u0308\u034f\u0323` was not `INV-A\u0323\u0308`.
    (Bidi controls that reorder are refused outright: `rules.limits.reordering_character`.)"""
    if not text.isascii():
        text = text.translate(_UNSEEN)
        if not text.isprintable():
            text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    composed = unicodedata.normalize("NFC", text).strip()
    return composed.casefold() if fold_case else composed


@lru_cache(maxsize=65536)  # a batch compares each number of a vendor with every later one of that vendor
def loose_number_key(text: str) -> str:
    """An invoice number with only its letters and digits, each run of digits without leading
    zeros: `INV-0042`, `INV42` and `inv 0042` all give `inv42`, `NV-2026-0417` and `NV 2026 417`
    both `nv2026417`; compatibility forms as their plain letters (NFKC): `ＩＮＶ－１` is `inv1`, as a
    Japanese vendor's system writes INV-1. Equal loose keys under different numbers make a possible
    duplicate, for a person to look at."""
    return _NOT_LETTER_OR_DIGIT.sub("", _LEADING_ZEROS.sub("", identifier_key(unicodedata.normalize("NFKC", text))))


@dataclass(frozen=True, slots=True)
class IdentifierRules:
    case_sensitive: frozenset[str] = frozenset()  # fields compared with their letter case

    def key(self, field: str, text: str) -> str:
        return identifier_key(text, field not in self.case_sensitive)

    def same(self, field: str, left: str, right: str) -> bool:
        return self.key(field, left) == self.key(field, right)
