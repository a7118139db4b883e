"""`kill -USR1 <worker pid>` writes where every thread and every asyncio task is, to stderr:
how to tell a worker stuck on a database lock from one waiting on Kafka, without stopping it."""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys


def dump_state() -> None:
    out = sys.__stderr__  # the process's own stderr: the worker's logging replaces sys.stderr
    faulthandler.dump_traceback(out, all_threads=True)
    tasks = asyncio.all_tasks()
    print(f"--- {len(tasks)} asyncio tasks", file=out)
    for task in tasks:
        task.print_stack(limit=12, file=out)
    out.flush()


def dump_state_on_usr1(app) -> None:
    @app.task
    async def listen_for_usr1() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_state)
