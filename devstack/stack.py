"""`LocalStack`: up, status and down for the whole stack, with its state in `.stack/state.json`.

`up` twice is harmless: components that still answer are kept. `down` stops every process the
state file names, so nothing is left running.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

from devstack import jvm, postgres
from devstack.install import COMPONENTS, install_all
from devstack.process import StackError, free_port, runs_under, terminate


@dataclass(frozen=True)
class StackEndpoints:
    kafka_bootstrap: str | None = None
    kafka_signed_in: jvm.SignedInListener | None = None  # the same broker over SASL_SSL
    connect_url: str | None = None
    marketplace_db_url: str | None = None
    sampro_db_url: str | None = None
    scheduler_db_url: str | None = None


class LocalStack:
    def __init__(self, root: Path | None = None):
        self.home = (root or Path.cwd()) / ".stack"
        self.state_file = self.home / "state.json"

    # -- state -------------------------------------------------------------------------------
    def _state(self) -> dict:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}  # `[1]` made `status` a traceback

    def _save(self, state: dict) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))

    def _running(self, state: dict, name: str) -> bool:
        """Whether the component's process runs, and is ours: after a reboot its pid may be another
        program's, which `up` then took for the server, and `down` signalled."""
        entry = state.get(name)
        if not entry:
            return False
        if name == "postgres":
            return runs_under(postgres.postgres_pid(self.home / "postgres"), self.home)
        if name == "kafka" and not runs_under(entry.get("controller_pid"), self.home):
            return False
        return runs_under(entry.get("pid"), self.home)

    def _stop_leftovers(self, state: dict) -> None:
        """Connect, then the broker and the controller, each only if it is still one of ours."""
        for pid in (state.get("connect", {}).get("pid"), state.get("kafka", {}).get("pid"),
                    state.get("kafka", {}).get("controller_pid")):
            if runs_under(pid, self.home):
                terminate(pid)

    # -- commands ----------------------------------------------------------------------------
    def install(self, browser: bool = False, odbc: bool = False, components: tuple[str, ...] = COMPONENTS) -> list[str]:
        return install_all(browser, odbc, components)

    def up(self, components: tuple[str, ...] = COMPONENTS) -> StackEndpoints:
        unknown = set(components) - set(COMPONENTS)
        if unknown or not components:  # none at all started nothing, and said "ready"
            raise StackError(f"unknown component(s) {sorted(unknown)}; choose from {COMPONENTS}" if unknown
                             else f"no component named; choose from {COMPONENTS}")
        self.install(components=components)  # the demo's Kafka alone needs no PostgreSQL from apt, no Debezium
        state = self._state()
        if "postgres" in components and not self._running(state, "postgres"):
            port = free_port()
            postgres.start_postgres(self.home / "postgres", port)
            state["postgres"] = {"port": port}
            self._save(state)
        if ("kafka" in components or "connect" in components) and not self._running(state, "kafka"):
            self._stop_leftovers(state)  # a controller whose broker died, say: the new cluster replaces it
            port, controller = free_port(), free_port()
            controller_pid, pid, signed_in = jvm.start_kafka(self.home / "kafka", port, controller, free_port())
            state["kafka"] = {"pid": pid, "port": port, "controller_pid": controller_pid, "controller_port": controller,
                              "signed_in": asdict(signed_in)}
            state.pop("connect", None)  # a worker bound to an old broker is useless
            self._save(state)
        if "connect" in components and not self._running(state, "connect"):
            port = free_port()
            pid = jvm.start_connect(self.home / "connect", f"127.0.0.1:{state['kafka']['port']}", port)
            state["connect"] = {"pid": pid, "port": port}
            self._save(state)
        return self.endpoints()

    def endpoints(self) -> StackEndpoints:
        state = self._state()
        pg = state.get("postgres", {}).get("port") if self._running(state, "postgres") else None
        kafka = state.get("kafka", {}).get("port") if self._running(state, "kafka") else None
        signed_in = state["kafka"].get("signed_in") if kafka else None
        connect = state.get("connect", {}).get("port") if self._running(state, "connect") else None
        return StackEndpoints(
            kafka_bootstrap=f"127.0.0.1:{kafka}" if kafka else None,
            kafka_signed_in=jvm.SignedInListener(**signed_in) if signed_in else None,
            connect_url=f"http://127.0.0.1:{connect}" if connect else None,
            marketplace_db_url=postgres.url(pg, "marketplace") if pg else None,
            sampro_db_url=postgres.url(pg, "sampro") if pg else None,
            scheduler_db_url=postgres.url(pg, "scheduler") if pg else None,
        )

    def status(self) -> dict[str, dict]:
        state = self._state()
        return {name: {**state.get(name, {}), "running": self._running(state, name)} for name in COMPONENTS}

    def outage(self, name: str) -> None:
        """Takes one server down as a failure would: the Kafka broker killed (-9; its controller
        stays up, as a production quorum would), PostgreSQL stopped."""
        state = self._state()
        if name == "kafka":
            os.killpg(state["kafka"]["pid"], signal.SIGKILL)
        elif name == "postgres":
            postgres.stop_postgres(self.home / "postgres")
        else:
            raise StackError(f"no outage for {name!r}; choose kafka or postgres")

    def recover(self, name: str) -> None:
        """Starts the server again on its data, ports and configuration."""
        state = self._state()
        if name == "kafka":
            if not runs_under(state["kafka"].get("controller_pid"), self.home):
                raise StackError("The Kafka controller is not running: `stack down`, then `stack up`.")
            state["kafka"]["pid"] = jvm.restart_kafka(self.home / "kafka", state["kafka"]["port"])
            self._save(state)
        elif name == "postgres":
            postgres.restart_postgres(self.home / "postgres", state["postgres"]["port"])
        else:
            raise StackError(f"no outage for {name!r}; choose kafka or postgres")

    def down(self, components: tuple[str, ...] = COMPONENTS) -> list[str]:
        """Stops connect, then kafka, then postgres, of `components` (all by default; Connect goes
        with Kafka); returns what was stopped."""
        state = self._state()
        if "kafka" in components:
            components = (*components, "connect")
        stopped = [name for name in ("connect", "kafka") if name in components and self._running(state, name)]
        if "kafka" in components:
            self._stop_leftovers(state)
            state.pop("kafka", None)
            state.pop("connect", None)
        elif "connect" in components:
            if runs_under(pid := state.get("connect", {}).get("pid"), self.home):
                terminate(pid)
            state.pop("connect", None)
        # With or without its state entry: one a failed start left behind is ours too.
        if "postgres" in components and runs_under(postgres.postgres_pid(self.home / "postgres"), self.home):
            postgres.stop_postgres(self.home / "postgres")
            stopped.append("postgres")
        if "postgres" in components:
            state.pop("postgres", None)
        self._save({name: entry for name, entry in state.items() if name in COMPONENTS})
        return stopped

    def not_running(self, components: tuple[str, ...]) -> tuple[str, ...]:
        """Those of `components` not running now: what a run that starts them stops again after it, and
        no more (a benchmark stopped the Kafka of a demo running beside it, having checked PostgreSQL)."""
        status = self.status()
        return tuple(name for name in components if not status[name]["running"])
