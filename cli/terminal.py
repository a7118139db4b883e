"""Text from vendors, Sampro and the topics as the CLI prints it: inert, whatever it holds."""

from __future__ import annotations

import os
import re

from rich.console import Console
from rich.text import Text

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}  # every command and group answers -h as --help does

# C0 and C1 controls (ESC starts a terminal command, CR rewrites the line) and the bidi controls,
# which reorder what follows them on screen: U+202E shows the digits of "INV-0421" reversed.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def inert(value: object) -> Text:
    """The value as a table cell or title: Rich markup in it stays text (`[link=...]` is no link,
    `[/b]` no error), and each character above is shown as its \\uXXXX escape."""
    return Text(_UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", str(value)))


UNFOLDED = 10_000  # columns where stdout is no terminal: wider than any row these commands print


def stdout_console() -> Console:
    """Rich's console for a command's tables on stdout: as wide as the terminal on one (or as
    COLUMNS says); in a pipe or a file a row stays one line, as grep and a script read it (folded at
    80 columns, `settings | grep KAFKA_BOOTSTRAP_SERVERS` found nothing)."""
    console = Console()
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return Console(width=UNFOLDED)
