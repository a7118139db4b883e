"""docker-compose.yml cannot run here (no Docker engine), so its contents are checked instead."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cli.main import app
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_infrastructure_services_are_there_with_pinned_versions():
    services = COMPOSE["services"]
    assert {"kafka", "postgres", "connect", "worker"} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.3.1"
    assert services["connect"]["image"].endswith(":3.6.1.Final")
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image {image} is not pinned"


def test_postgres_runs_with_logical_replication():
    assert "wal_level=logical" in COMPOSE["services"]["postgres"]["command"]


def test_every_project_setting_named_exists():
    known = {f"INVOICE_AUTOMATION_{name.upper()}" for name in Settings.model_fields}
    named = set(re.findall(r"INVOICE_AUTOMATION_[A-Z_]+", (ROOT / "docker-compose.yml").read_text()))
    assert named, "the compose file names no settings"
    assert named <= known, f"unknown settings: {sorted(named - known)}"


def test_every_project_command_and_file_named_exists():
    commands = {command.name or command.callback.__name__ for command in app.registered_commands}
    commands |= {group.name for group in app.registered_groups}
    for name, service in COMPOSE["services"].items():
        for invoked in re.findall(r"invoice-automation (\w[\w-]*)", " ".join(service.get("entrypoint", []))):
            assert invoked in commands, f"service {name} runs `invoice-automation {invoked}`, which does not exist"
        for volume in service.get("volumes", []):
            assert (ROOT / volume.split(":")[0]).exists(), f"service {name} mounts {volume}, which is missing"


def test_only_the_api_is_published_and_only_on_the_loopback_address():
    published = {name: service["ports"] for name, service in COMPOSE["services"].items() if "ports" in service}
    assert published == {"api": ["127.0.0.1:8000:8000"]}


SECRETS = ("INVOICE_AUTOMATION_API_TOKEN", "INVOICE_AUTOMATION_API_SESSION_SECRET", "POSTGRES_PASSWORD")


def test_no_secret_has_a_default_and_compose_stops_without_each():
    """`${NAME:?message}` makes `docker compose up` fail when .env does not set NAME."""
    text = (ROOT / "docker-compose.yml").read_text()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses and all(use.startswith(":?") for use in uses), name
    api = COMPOSE["services"]["api"]["environment"]
    assert api["INVOICE_AUTOMATION_API_TOKEN"].startswith("${INVOICE_AUTOMATION_API_TOKEN:?")
    assert COMPOSE["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "change-me" not in text and "invoice:invoice@" not in text
