"""An RPA mailbox in memory, for unit tests of the agents."""

from __future__ import annotations

from rules.lifecycle import RpaRequest


class InMemoryRpaMailer:
    def __init__(self) -> None:
        self.sent: list[RpaRequest] = []
        self._log: set[tuple[str, int]] = set()

    def send(self, request: RpaRequest) -> bool:
        key = (request.invoice_id, request.invoice_version)
        if key in self._log:
            return False
        self.sent.append(request)
        self._log.add(key)
        return True
