"""Where a polling source keeps its watermark (and the events of its look-back window): a JSON
state, read at the source's first poll and replaced whole at a commit that changed it.

A worker on another machine that takes partition 0 over (and with it the polling) must go on
where the last one committed: so the worker keeps the state in processscheduler, which every
worker shares (`SqlWatermark`). A state file is what an older version kept, and what the state
is read from until the first commit after an upgrade (`FileWatermark`).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, insert, select, update

from connectors.scheduler.tables import source_watermarks
from connectors.sql import mapped_errors

log = logging.getLogger(__name__)


class WatermarkStore(Protocol):
    def read(self) -> dict[str, Any]:
        """The state last written; empty when there is none yet (or it cannot be read: start afresh)."""

    def write(self, state: dict[str, Any]) -> None: ...


def _state(text: str | bytes | None) -> dict[str, Any]:
    try:
        state = json.loads(text) if text else {}
    except ValueError:
        state = None
    if not isinstance(state, dict):
        log.warning("a polling state that is no JSON object is read as none, and its source starts afresh: %.200r",
                    text)
        return {}
    return state


class SavedState:
    """A polling source's state as its store holds it. `save` writes only a state that differs from
    that (the window's ids may be a megabyte, and a quiet source polls every 2 s). A write that
    fails raises, and the next `save` writes again; meanwhile `behind` says that the store lacks
    the source's last commit, so that what it holds is not read back over the source's own."""

    def __init__(self, store: WatermarkStore):
        self.store = store
        self.behind = False
        self._held: dict[str, Any] | None = None

    def read(self) -> dict[str, Any]:
        self._held = self.store.read()
        return self._held

    def save(self, state: dict[str, Any]) -> None:
        self.behind = state != self._held
        if self.behind:
            self.store.write(state)
            self._held, self.behind = state, False


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

    def __init__(self, engine: Engine, source: str, older_file: FileWatermark | None = None):
        self.engine, self.source, self.older_file = engine, source, older_file

    def read(self) -> dict[str, Any]:
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            text = conn.execute(select(source_watermarks.c.state)
                                .where(source_watermarks.c.source == self.source)).scalar()
        if text is None:  # never committed here: an older version's file, if this machine has one
            return self.older_file.read() if self.older_file is not None else {}
        return _state(text)

    def write(self, state: dict[str, Any]) -> None:
        values = {"state": json.dumps(state), "updated_at": datetime.now(UTC)}
        table = source_watermarks
        with mapped_errors("processscheduler"), self.engine.begin() as conn:
            if not conn.execute(update(table).where(table.c.source == self.source).values(**values)).rowcount:
                conn.execute(insert(table).values(source=self.source, **values))
