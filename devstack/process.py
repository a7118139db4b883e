"""Starting, probing and stopping the stack's server processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class StackError(RuntimeError):
    """A component could not be installed, started or stopped; the message says what to look at."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_answers(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:`port`."""
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours still answers kill(0)
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def runs_under(pid: int | None, home: Path) -> bool:
    """The process `pid` is alive and was started with `home` in its command line: one of the
    stack's own, not whatever took over a pid recorded before a reboot. Without a /proc to ask
    (not Linux), alive is all there is to go by."""
    if not alive(pid):
        return False
    if not Path("/proc/self/cmdline").exists():
        return True
    try:
        return str(home) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def spawn(argv: Sequence[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Starts a server in its own session so that stopping it takes its children along."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, env=env, start_new_session=True,
        )
    return process.pid


def wait_until(probe: Callable[[], bool], timeout: float, pid: int | None, what: str, log: Path) -> None:
    """Polls `probe` until it answers; a server that never gets ready, or whose start is
    interrupted (Ctrl-C), is stopped, not left behind unrecorded."""
    try:
        _wait(probe, timeout, pid, what, log)
    except BaseException:
        terminate(pid)
        raise


def _wait(probe: Callable[[], bool], timeout: float, pid: int | None, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            raise StackError(f"{what} exited while starting. Last lines of {log}:\n{tail(log)}")
        try:
            if probe():
                return
        except Exception:  # not ready yet: the probe's own errors are expected while starting
            pass
        time.sleep(0.25)
    raise StackError(f"{what} not ready after {timeout:.0f} s. Last lines of {log}:\n{tail(log)}")


def terminate(pid: int | None, grace: float = 20.0) -> None:
    """SIGTERM to the process group, wait, then SIGKILL."""
    if not alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
