"""`invoice-automation worker` as a child process: started with its settings, stopped or killed."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

from devstack.process import tail

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None  # looked up before any fork


def dies_with_its_parent() -> None:
    """Run in the child before exec: SIGTERM when the process that started it is gone. A demo or a
    benchmark closed with its terminal, killed, or cut off by a CI timeout left its workers
    running for good (they wait out a Kafka outage for ever), and no `stack down` knew of them."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerProcess:
    def __init__(self, settings_env: dict[str, str], log: Path, role: str = "all"):
        self.env = {**os.environ, **settings_env}
        self.log, self.role = log, role
        self.process: subprocess.Popen | None = None
        self.http_port: int | None = None  # where its /readyz and /metrics answer, when it serves them

    def start(self) -> WorkerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "worker", "--loglevel", "info", "--role", self.role],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=dies_with_its_parent,
            )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown, no final commit, as a crash."""
        if self.running():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, grace: float = 30) -> None:
        if not self.running():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def dump_state(self) -> None:
        """Asks the worker to write its threads' and tasks' stacks to its log (see cli/worker.py)."""
        if self.running():
            os.kill(self.process.pid, signal.SIGUSR1)

    def last_lines(self) -> str:
        return tail(self.log, 40)
