"""A polling source's watermark file: small JSON, replaced whole so that a crash mid-write leaves
the previous state, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_watermark(path: Path) -> dict[str, Any]:
    """The state last written; empty when there is none yet (or it cannot be read: start afresh)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_watermark(path: Path, state: dict[str, Any]) -> None:
    """Written to a temporary file, then renamed over the state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    os.replace(temporary, path)
