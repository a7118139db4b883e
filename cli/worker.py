"""`worker`: run the pipeline's agents until SIGINT or SIGTERM."""

from __future__ import annotations

from typing import Annotated

import typer

LogLevel = Annotated[str, typer.Option(help="Log level: debug, info, warning or error.")]


def worker(loglevel: LogLevel = "warning") -> None:
    """Start the agents: marketplace ingest, the per-PO decisions, processscheduler and the RPA mailbox.

    Every setting comes from INVOICE_AUTOMATION_* environment variables (see streams/settings.py):
    the broker, the databases, the SMTP server, the tolerances file and the dispatch mode.
    Topics that do not exist yet are created first. `kill -USR1 <pid>` writes the stack of every
    thread and asyncio task to the log, to see where a stalled worker waits.
    """
    import faust

    from streams.bootstrap import bootstrap
    from streams.diagnostics import dump_state_on_usr1
    from streams.settings import Settings
    from streams.topics import ensure_topics

    settings = Settings()
    ensure_topics(settings)
    pipeline = bootstrap(settings)
    dump_state_on_usr1(pipeline.app)
    faust.Worker(pipeline.app, loglevel=loglevel.upper(), quiet=True).execute_from_commandline()


def register(app: typer.Typer) -> None:
    app.command()(worker)
