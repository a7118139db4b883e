"""Where a polling source keeps its watermark (and the events of its look-back window): a JSON
state, read when the source starts and replaced whole at each commit.

A worker on another machine that takes partition 0 over (and with it the polling) must go on
where the last one committed: so the worker keeps the state in processscheduler, which every
worker shares (`SqlWatermark`). A state file is what an older version kept, and what the state
is read from until the first commit after an upgrade (`FileWatermark`).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, insert, select, update

from connectors.scheduler.tables import source_watermarks
from connectors.sql import mapped_errors


class WatermarkStore(Protocol):
    def read(self) -> dict[str, Any]:
        """The state last written; empty when there is none yet (or it cannot be read: start afresh)."""

    def write(self, state: dict[str, Any]) -> None: ...


def _state(text: str | bytes | None) -> dict[str, Any]:
    try:
        state = json.loads(text) if text else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


class FileWatermark:
    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict[str, Any]:
        try:
            return _state(self.path.read_text())
        except OSError:
            return {}

    def write(self, state: dict[str, Any]) -> None:
        """Written to a temporary file, then renamed over the state: a crash mid-write leaves the
        previous state, never half of one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.path)


class SqlWatermark:
    """One row of processscheduler's `source_watermarks`, under the source's name."""

    def __init__(self, engine: Engine, source: str, before: FileWatermark | None = None):
        self.engine, self.source, self.before = engine, source, before

    def read(self) -> dict[str, Any]:
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            text = conn.execute(select(source_watermarks.c.state)
                                .where(source_watermarks.c.source == self.source)).scalar()
        if text is None:  # never committed here: an older version's file, if this machine has one
            return self.before.read() if self.before is not None else {}
        return _state(text)

    def write(self, state: dict[str, Any]) -> None:
        values = {"state": json.dumps(state), "updated_at": datetime.now(UTC)}
        t = source_watermarks
        with mapped_errors("processscheduler"), self.engine.begin() as conn:
            if not conn.execute(update(t).where(t.c.source == self.source).values(**values)).rowcount:
                conn.execute(insert(t).values(source=self.source, **values))
