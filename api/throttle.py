"""Failed sign-ins, counted per user and per client address: the first few are free, then each
further attempt must wait twice as long as the one before, up to a longest wait. A refused attempt
is answered before its password is checked, so guessing costs the guesser time and the API nothing.

A successful sign-in clears its user's count, not its address's: one account of their own must not
let someone go on guessing the others from the same address. Counts are kept in this process, at
most `capacity` keys (the oldest go first), and forgotten after a quiet longest wait. A key that
starts with `kept` is never pushed out (a configured user's, a user's at each of the addresses it
last signed in from, and the fixed buckets of names no one has: `api.auth`): a guesser with a
block of IPv6 addresses pushed a user's count out and guessed on from zero.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Failures:
    count: int
    last_at: float


class SignInThrottle:
    def __init__(self, free_failures: int, first_wait: float, longest_wait: float,
                 clock: Callable[[], float] = time.monotonic, capacity: int = 10_000, kept: str = "user:"):
        self.free_failures, self.first_wait, self.longest_wait = free_failures, first_wait, longest_wait
        self.clock, self.capacity, self.kept = clock, capacity, kept
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def _wait(self, failures: _Failures, now: float) -> float:
        if failures.count < self.free_failures:
            return 0.0
        # The doublings bounded: 2.0 ** 1,024 overflows, and a user guessed at for ten days, each wait
        # waited out, got a 500 for every sign-in, the right password's too.
        doublings = min(failures.count - self.free_failures, 64)
        backoff = min(self.first_wait * 2 ** doublings, self.longest_wait)
        return max(failures.last_at + backoff - now, 0.0)

    def wait_for(self, *keys: str) -> float:
        """Seconds until every one of `keys` may try again; 0 when they may now."""
        now = self.clock()
        return max((self._wait(self._failures[key], now) for key in keys if key in self._failures), default=0.0)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            failures = self._failures.pop(key, None)
            if failures is None or now - failures.last_at > 2 * self.longest_wait:
                failures = _Failures(0, now)
            failures.count, failures.last_at = failures.count + 1, now
            self._failures[key] = failures
        while len(self._failures) > self.capacity:
            oldest = next((key for key in self._failures if not key.startswith(self.kept)), None)
            if oldest is None:
                break
            del self._failures[oldest]

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


def address_key(address: str) -> str:
    """What a guesser's address is counted by: an IPv6 address by its /64, which one home line
    holds whole (each of its addresses was a count of its own from zero); any other as it is."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"address:{address[:100]}"
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        # An API listening on "::" hears IPv4 clients as ::ffff:a.b.c.d: by its /64, every one of
        # them was one count, and five guesses from any held all of them back.
        parsed = parsed.ipv4_mapped
    if isinstance(parsed, ipaddress.IPv6Address):
        return f"address:{ipaddress.ip_network(f'{parsed}/64', strict=False)}"
    return f"address:{parsed}"
