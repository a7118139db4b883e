"""`api`: serve the HTTP API and the dashboard; `api hash-password` for INVOICE_AUTOMATION_API_USERS."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Annotated

import typer

from cli.files import InputFileError, fail
from cli.terminal import HELP_OPTIONS

api_app = typer.Typer(rich_markup_mode=None, context_settings=HELP_OPTIONS, invoke_without_command=True)


@api_app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
) -> None:
    """Serve the HTTP API for the RPA bot and AP, and the live dashboard (http://HOST:PORT/dashboard), until Ctrl-C.

    Settings come from INVOICE_AUTOMATION_* variables: the databases and Kafka as for the worker,
    and API_TOKEN (the RPA bot's bearer token) and API_SESSION_SECRET, both required, API_USERS
    (a JSON list of {name, password_hash, role}); behind a proxy see the README's "Security".
    """
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from api.app import create_app
    from api.startup import ApiMisconfigured
    from cli.logs import configure_logging
    from streams.settings import Settings

    configure_logging("info", Settings().log_format)
    try:
        app = create_app()
        _can_listen(host, port)
    except (ApiMisconfigured, InputFileError) as refused:
        raise fail(refused) from None
    # X-Forwarded-* are read by api/proxy.py, and only from the configured proxies; log_config=None:
    # uvicorn's loggers go through the handler above (text or JSON) instead of its own.
    uvicorn.run(app, host=host, port=port, proxy_headers=False, server_header=False, log_level="info",
                log_config=None)


def _can_listen(host: str, port: int) -> None:
    """The address bound and let go as uvicorn will bind it (asyncio's create_server): a port taken
    was uvicorn's own line, no `error:` and no JSON object, and exit 3."""

    async def bound() -> None:
        server = await asyncio.get_running_loop().create_server(asyncio.Protocol, host, port)
        server.close()
        await server.wait_closed()

    try:
        asyncio.run(bound())
    except socket.gaierror as error:
        raise InputFileError(f"--host {host}: does not resolve ({error.strerror})") from None
    except OSError as error:
        where = f"--host {host}" if error.errno == errno.EADDRNOTAVAIL else f"--port {port}"
        raise InputFileError(f"{where}: {os.strerror(error.errno).lower() if error.errno else error}") from None


@api_app.command("hash-password")
def hash_password(
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                          help="Asked for when left out.")],
) -> None:
    """Print the argon2 hash of a password, for a user's `password_hash` in INVOICE_AUTOMATION_API_USERS."""
    from api.auth import hash_password as argon2_hash

    if not password:
        raise typer.BadParameter("the password must not be empty", param_hint="--password")
    typer.echo(argon2_hash(password))


def register(app: typer.Typer) -> None:
    app.add_typer(api_app, name="api")
