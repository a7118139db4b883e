"""An RPA mailbox in memory, for unit tests of the agents."""

from __future__ import annotations

from collections.abc import Sequence

from rules.lifecycle import RpaRequest


class InMemoryRpaMailer:
    def __init__(self) -> None:
        self.sent: list[RpaRequest] = []
        self._log: set[tuple[str, int]] = set()

    def send(self, requests: Sequence[RpaRequest]) -> list[RpaRequest]:
        sent = []
        for request in requests:
            key = (request.invoice_id, request.invoice_version)
            if key not in self._log:
                self._log.add(key)
                sent.append(request)
        self.sent.extend(sent)
        return sent
