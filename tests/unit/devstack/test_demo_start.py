"""The demo stops what it started when a later step of its start fails or is interrupted."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import demo
from devstack.stack import StackEndpoints


class Stack:
    def __init__(self, running: bool):
        self.running, self.calls = running, []

    def status(self) -> dict:
        return {"kafka": {"running": self.running}}

    def up(self, components) -> StackEndpoints:
        self.calls.append("up")
        return StackEndpoints(kafka_bootstrap="127.0.0.1:1")

    def down(self, components) -> list[str]:
        self.calls.append(("down", components))
        return list(components)


@pytest.mark.parametrize("failure", [FileNotFoundError("samples/01/invoice.json"), KeyboardInterrupt()])
def test_kafka_it_started_is_stopped_when_a_later_step_fails(monkeypatch, tmp_path, failure):
    """A wrong --samples folder, or Ctrl-C while the API started, left both Kafka JVMs running."""
    stack = Stack(running=False)
    monkeypatch.setattr(demo, "LocalStack", lambda root: stack)

    def prepare(*args):
        raise failure

    monkeypatch.setattr(demo, "prepare", prepare)
    with pytest.raises(type(failure)):
        demo.start(tmp_path, tmp_path)
    assert stack.calls == ["up", ("down", ("kafka",))]  # a PostgreSQL another run started stays up


def test_a_kafka_it_did_not_start_is_left_running(monkeypatch, tmp_path):
    stack = Stack(running=True)
    monkeypatch.setattr(demo, "LocalStack", lambda root: stack)
    monkeypatch.setattr(demo, "prepare", lambda *args: (_ for _ in ()).throw(FileNotFoundError("x")))
    with pytest.raises(FileNotFoundError):
        demo.start(tmp_path, tmp_path)
    assert stack.calls == ["up"]


def test_the_demo_signs_the_rpa_emails_and_hands_its_worker_the_key(tmp_path):
    """The stand-in bot enters only what is signed with the demo's key, so the worker (a process of its
    own, set from the environment) must sign with the same one: dumped, a secret reads '**********'."""
    settings, _, _ = demo.prepare(tmp_path, Path(__file__).resolve().parents[3] / "samples", "127.0.0.1:1")
    key = settings.rpa_signing_key.get_secret_value()
    assert len(key) == 64 and demo._settings_env(settings)["INVOICE_AUTOMATION_RPA_SIGNING_KEY"] == key
