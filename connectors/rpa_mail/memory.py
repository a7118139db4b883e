"""An RPA mailbox and a sent log in memory, for unit tests of the agents and the API."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from connectors.api_ports import RpaSentLog
from connectors.ports import RpaMailer, Unsent
from connectors.rpa_mail.smtp import passed_by_later
from rules.lifecycle import RpaRequest
from rules.po_ledger import last_hand_off_of


class InMemoryRpaMailer(RpaMailer):
    def __init__(self) -> None:
        self.sent: list[RpaRequest] = []
        self._log: set[tuple[str, int, int]] = set()
        self._failed: dict[tuple[str, int, int], str] = {}  # kept failed, with why

    def unsent(self, requests: Sequence[RpaRequest]) -> Unsent:
        logged = self._log | set(self._failed)
        last = last_hand_off_of(logged)
        kept_failed = {key: self._failed[key] for key in map(_key, requests)
                       if key in self._failed and last[key[:2]] == key[2]}
        before = passed_by_later({_key(r) for r in requests}, logged) - set(kept_failed)
        return Unsent([r for r in requests if _key(r) not in before], kept_failed)

    def keep_failed(self, failures: Sequence[tuple[RpaRequest, str]]) -> None:
        for request, why in failures:
            self._failed.setdefault(_key(request), why)

    def send(self, requests: Sequence[RpaRequest]) -> list[RpaRequest]:
        sent = []
        for request in requests:
            key = _key(request)
            if key not in passed_by_later({key}, self._log | set(self._failed)):
                self._log.add(key)
                sent.append(request)
        self.sent.extend(sent)
        return sent


def _key(request: RpaRequest) -> tuple[str, int, int]:
    return request.invoice_id, request.invoice_version, request.attempt


class InMemorySentLog(RpaSentLog):
    """The sent log as the API reads it: the hand-offs emailed and those in doubt, as a test sets them."""

    def __init__(self, in_doubt: Iterable[tuple[str, int, int]] = (),
                 hand_offs: Iterable[tuple[str, int, int]] = ()) -> None:
        self.doubtful = list(in_doubt)
        self.hand_offs = list(hand_offs)  # (invoice id, version, attempt) emailed

    def in_doubt(self) -> list[tuple[str, int, int]]:
        return list(self.doubtful)

    def last_hand_off(self, invoice_id: str, version: int) -> int:
        return max((attempt for i, v, attempt in self.hand_offs if (i, v) == (invoice_id, version)), default=0)
