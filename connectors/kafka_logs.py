"""librdkafka's own log lines through Python logging: WARNING and above, each problem once.

Without a logger librdkafka writes every line to stderr itself, and a broker that is down makes it
repeat the same connection failure every second or so (620 lines for one `explain`). Through
these loggers a line shows at most once per `QUIET_SECONDS` for the same problem, told apart by
its text without librdkafka's timings ("(after 12ms in state CONNECT, 3 identical error(s)
suppressed)") and with the numbers taken out (client and thread names).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from rules.errors import Unavailable

QUIET_SECONDS = 300.0  # a problem that is still there after five minutes is worth another line
_TIMINGS = re.compile(r"\s*\(after \d+ms.*\)\s*$")  # librdkafka ends a failure with them
_NUMBERS = re.compile(r"\d+")


class OncePerProblem(logging.Filter):
    def __init__(self, quiet_seconds: float = QUIET_SECONDS, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.quiet_seconds, self.clock = quiet_seconds, clock
        self._shown: dict[str, float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        problem = _NUMBERS.sub("#", _TIMINGS.sub("", record.getMessage()))
        now = self.clock()
        with self._lock:
            shown = self._shown.get(problem)
            if shown is not None and now - shown < self.quiet_seconds:
                return False
            self._shown[problem] = now
        return True


def kafka_logger(client: str) -> logging.Logger:
    """The logger a librdkafka client of this kind (consumer, producer, admin...) is given."""
    logger = logging.getLogger(f"librdkafka.{client}")
    logger.setLevel(logging.WARNING)
    if not any(isinstance(existing, OncePerProblem) for existing in logger.filters):
        logger.addFilter(OncePerProblem())
    return logger


def client_config(bootstrap_servers: str, client: str, **config: Any) -> dict[str, Any]:
    """A librdkafka configuration that logs through `kafka_logger(client)`."""
    return {"bootstrap.servers": bootstrap_servers, "logger": kafka_logger(client), **config}


def kafka_down(bootstrap_servers: str, doing: str, error: Any) -> Unavailable:
    """What a command says when no broker answers: where it asked, and librdkafka's reason."""
    reason = error.str() if hasattr(error, "str") else str(error)
    return Unavailable("kafka", f"{doing} at {bootstrap_servers}: {reason}")
