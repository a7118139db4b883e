"""`kill -USR1 <worker pid>` writes where every thread is, to stderr: how to tell a worker stuck
on a database lock from one waiting on Kafka, without stopping it."""

from __future__ import annotations

import faulthandler
import signal
import sys


def dump_state_on_usr1() -> None:
    # The process's own stderr, which the worker's log captures; chain=False: only this handler.
    if sys.__stderr__ is None:  # started without a stderr (pythonw): nowhere to dump to
        return
    faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True, chain=False)
