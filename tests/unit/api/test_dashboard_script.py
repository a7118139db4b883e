"""The dashboard's script, read as text, against the API it shows: the characters it marks as
invisible are the ones the API refuses in a Sampro invoice id."""

from __future__ import annotations

import re

from api.routes.dashboard import STATIC
from api.schemas import _HIDDEN_CHARACTER
from rules.holds import RPA_FAILURE

# Shown by the page as they are: the blanks HTML shows as a space (the payload's lines, a clerk's
# comment), and ZWJ and ZWNJ, marked only where they join nothing (the browser tests check which).
SHOWN_AS_THEY_ARE = {"\t", "\n", "\f", "\r", "\u200c", "\u200d"}


def _page_class() -> re.Pattern[str]:
    """dashboard.js's HIDDEN class, its \\u{...} escapes written as Python reads them."""
    (javascript,) = re.findall(r"const HIDDEN = String\.raw`(\[.*?\])`;", (STATIC / "dashboard.js").read_text())
    return re.compile(re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda hex_digits: f"\\U{int(hex_digits[1], 16):08x}",
                             javascript))


def test_the_dashboard_marks_every_character_the_api_refuses_in_a_sampro_id_as_invisible():
    """The page marked only some format characters and the bidi controls: "INV-778" and a braille
    blank (U+2800) read as the paid INV-778 in the invoice list, as did a Hangul filler, a
    variation selector or a line separator, where the API names each as one that shows nothing."""
    page = _page_class()
    characters = [chr(code) for code in range(0x110000)]
    marked = {character for character in characters if page.fullmatch(character)}
    hidden = {character for character in characters if _HIDDEN_CHARACTER.fullmatch(character)}
    named = lambda found: sorted(f"U+{ord(c):04X}" for c in found)  # noqa: E731
    assert named(hidden - SHOWN_AS_THEY_ARE - marked) == []  # left unmarked
    assert named(marked - (hidden - SHOWN_AS_THEY_ARE)) == []  # marked, though the API takes it or the page shows it


def test_the_dashboard_names_a_failed_hand_off_as_the_api_does():
    (named,) = re.findall(r'const RPA_FAILURE = "(.*?)";', (STATIC / "dashboard.js").read_text())
    assert named == RPA_FAILURE
