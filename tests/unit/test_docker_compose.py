"""docker-compose.yml cannot run here (no Docker engine), so what a Docker user would deploy is
checked instead: the files validate against the Compose Specification's own JSON schema (as
vendored by check-jsonschema) after compose's interpolation, and hold what makes the stack work."""

from __future__ import annotations

import importlib.resources
import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from cli.main import app
from connectors.marketplace_table import marketplace_invoices
from connectors.sampro.tables import sampro_tables
from streams.settings import Settings, guessable

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.kafka-host.yml")
SECRETS = {"POSTGRES_PASSWORD", "INVOICE_AUTOMATION_API_TOKEN", "INVOICE_AUTOMATION_API_SESSION_SECRET",
           "INVOICE_AUTOMATION_RPA_SIGNING_KEY"}
DOT_ENV = {name: f"value-of-{name.lower()}" for name in SECRETS}
# ${VAR}, ${VAR:-default}, ${VAR:?message}; $$ is a literal $.
REFERENCE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<kind>[-?])(?P<text>[^}]*))?\}")


class MissingVariable(KeyError):
    pass


def interpolate(node, env: dict[str, str]):
    """Compose's interpolation of ${...} in every string, as far as these files use it."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if not isinstance(node, str):
        return node

    def value(match: re.Match) -> str:
        name, kind, text = match["name"], match["kind"], match["text"]
        if env.get(name):
            return env[name]
        if kind == "?":
            raise MissingVariable(f"{name}: {text}")
        return text if kind == "-" else ""

    return REFERENCE.sub(value, node.replace("$$", "\0")).replace("\0", "$")


def _load(name: str, env: dict[str, str] = DOT_ENV) -> dict:
    return interpolate(yaml.safe_load((ROOT / name).read_text()), env)


COMPOSE = _load("docker-compose.yml")
SERVICES = COMPOSE["services"]


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_the_files_are_valid_under_the_compose_specification(name):
    schema = json.loads((importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
                         / "compose-spec.json").read_text())
    assert schema["title"] == "Compose Specification"
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft202012Validator(schema).iter_errors(_load(name))]
    assert not errors, errors


def test_no_top_level_key_that_older_compose_versions_trip_on():
    assert not {"version", "name"} & set(COMPOSE)


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(secret):
    with pytest.raises(MissingVariable, match=f"{secret}: set {secret} in .env"):
        _load("docker-compose.yml", {name: value for name, value in DOT_ENV.items() if name != secret})


def test_no_secret_is_written_in_the_files():
    text = "\n".join((ROOT / name).read_text() for name in COMPOSE_FILES)
    for line in text.splitlines():
        if re.search(r"(TOKEN|SECRET|PASSWORD)\w*:", line) and not line.lstrip().startswith("#"):
            assert re.search(r"\$\{\w+:\?", line), f"a secret not taken from .env: {line.strip()}"
    for url in re.findall(r"postgresql\+psycopg://[^\s]+", text):
        assert url.startswith("postgresql+psycopg://invoice:${POSTGRES_PASSWORD:?"), url
    example = (ROOT / ".env.example").read_text()
    assert all(f"\n{name}=replace-with" in example for name in SECRETS)
    assert ".env" in (ROOT / ".gitignore").read_text().split() and ".env" in (ROOT / ".dockerignore").read_text()


def test_each_sample_secret_of_dot_env_example_is_refused_where_it_is_read():
    """Copied unchanged, the sample signing key (39 characters) was taken: a key anyone can read in
    the repository signed every RPA email, and the bot given it entered forgeries."""
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line.startswith("INVOICE_AUTOMATION_"))
    assert set(example) == SECRETS - {"POSTGRES_PASSWORD"}
    assert [name for name, value in example.items() if not guessable(value)] == []


def test_only_the_api_is_published_on_the_host():
    assert {name for name, service in SERVICES.items() if service.get("ports")} == {"api"}
    assert SERVICES["api"]["ports"] == ["127.0.0.1:8000:8000"]  # behind the TLS proxy on this host
    kafka_host = _load("docker-compose.kafka-host.yml")["services"]["kafka"]["ports"]
    assert kafka_host == ["127.0.0.1:29092:29092"]  # the audit commands' listener, loopback only


def test_the_readme_gives_the_dashboard_at_the_address_compose_publishes():
    """It said http://<docker host>:8000, which the loopback-only port does not answer."""
    host, port, _ = SERVICES["api"]["ports"][0].split(":")
    readme = (ROOT / "README.md").read_text()
    assert f"The API and the dashboard are on `http://{host}:{port}` of the Docker host" in readme
    assert "<docker host>:8000" not in readme


def test_kafka_advertises_a_listener_for_the_host_and_runs_transactions_on_one_broker():
    env = SERVICES["kafka"]["environment"]
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised == {"INTERNAL": "kafka:9092", "HOST": "127.0.0.1:29092"}
    assert {listener.split("://")[0] for listener in env["KAFKA_LISTENERS"].split(",")} == {"INTERNAL", "HOST"}
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 1
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert SERVICES["worker"]["environment"]["INVOICE_AUTOMATION_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_kafka_runs_its_controller_apart_and_keeps_its_data_in_the_volumes():
    controller, broker = SERVICES["kafka-controller"]["environment"], SERVICES["kafka"]["environment"]
    assert (controller["KAFKA_PROCESS_ROLES"], broker["KAFKA_PROCESS_ROLES"]) == ("controller", "broker")
    assert controller["KAFKA_NODE_ID"] != broker["KAFKA_NODE_ID"]
    voters = f"{controller['KAFKA_NODE_ID']}@kafka-controller:9093"
    assert controller["KAFKA_CONTROLLER_QUORUM_VOTERS"] == broker["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
    assert controller["KAFKA_LISTENERS"] == "CONTROLLER://:9093"
    assert SERVICES["kafka"]["depends_on"] == {"kafka-controller": {"condition": "service_healthy"}}
    for name in ("kafka-controller", "kafka"):  # else the image writes under /tmp, lost with the container
        env, volumes = SERVICES[name]["environment"], SERVICES[name]["volumes"]
        assert [volume.split(":")[1] for volume in volumes] == [env["KAFKA_LOG_DIRS"]], name


def test_every_service_has_a_healthcheck_and_waits_for_what_it_needs():
    for name, service in SERVICES.items():
        assert service["healthcheck"]["test"][0] == "CMD", f"{name} has no healthcheck"
        for needed, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {needed}: {condition}"
            assert needed in SERVICES and "healthcheck" in SERVICES[needed]
    assert set(SERVICES["worker"]["depends_on"]) == {"kafka", "postgres", "connect", "mail"}
    assert set(SERVICES["api"]["depends_on"]) == {"worker"}
    assert set(SERVICES["mailer"]["depends_on"]) == {"worker", "mail"}


def _mounted(service: dict) -> dict[str, str]:
    """A service's named volumes, by the folder each is mounted on."""
    return {volume.split(":")[1]: volume.split(":")[0] for volume in service.get("volumes", [])
            if not volume.startswith(".")}


@pytest.mark.parametrize(("name", "kept"), [
    ("worker", lambda settings: settings.data_dir),  # the PO ledgers' stores, the marketplace watermark
    ("api", lambda settings: settings.api_sessions_db_url.removeprefix("sqlite:///")),  # the sign-outs
])
def test_what_a_service_keeps_is_on_a_volume_the_app_user_may_write(monkeypatch, name, kept):
    """The image's working folder (/app) is root's: the API stopped at start, writing its sessions
    database there, and a file in the container alone is gone when compose makes it again."""
    for variable, value in SERVICES[name]["environment"].items():
        monkeypatch.setenv(variable, str(value))
    path = Path(kept(Settings(_env_file=None)))
    assert any(path.is_relative_to(folder) for folder in _mounted(SERVICES[name])), f"{name} keeps {path}"
    assert path.is_relative_to("/data")  # the folder the Dockerfile gives to the app user


def test_every_service_is_started_again_when_it_stops():
    """Each runs for good (none is a one-off job): a worker that started before Kafka answered
    exited with code 2 and stayed down; `docker compose stop` still stops them."""
    assert {name: service.get("restart") for name, service in SERVICES.items()} == dict.fromkeys(
        SERVICES, "unless-stopped")


def test_deciding_and_the_rpa_emails_run_in_services_of_their_own():
    roles = {name: service["command"][service["command"].index("--role") + 1]
             for name, service in SERVICES.items() if "--role" in service.get("command", [])}
    assert roles == {"worker": "decide", "mailer": "mail"}


def test_the_service_that_sends_the_rpa_emails_signs_them(monkeypatch):
    """Without the key the emails went unsigned, and the bot could not tell them from a forgery."""
    for name, value in SERVICES["mailer"]["environment"].items():
        monkeypatch.setenv(name, value)
    assert Settings().rpa_signing_key_bytes == DOT_ENV["INVOICE_AUTOMATION_RPA_SIGNING_KEY"].encode()


@pytest.mark.parametrize("name", ["worker", "mailer", "api"])
def test_a_setting_written_in_dot_env_reaches_each_service_of_the_project(monkeypatch, name):
    """Compose passed only what its environment blocks named: DISPATCH_MODE=approval in .env went
    unheeded (every ready invoice emailed with no clerk's approval), a relay's SMTP_HOST in .env left
    the emails with the stand-in mailbox, which took each one."""
    dot_env = {**DOT_ENV, "INVOICE_AUTOMATION_DISPATCH_MODE": "approval",
               "INVOICE_AUTOMATION_SMTP_HOST": "relay.corp.example", "INVOICE_AUTOMATION_SMTP_STARTTLS": "true"}
    service = _load("docker-compose.yml", dot_env)["services"][name]
    assert service["env_file"] == ".env"
    # What compose gives the container: the env_file, then the service's environment over it.
    for variable, value in {**dot_env, **service["environment"]}.items():
        monkeypatch.setenv(variable, value)
    settings = Settings()
    assert (settings.dispatch_mode, settings.smtp_host, settings.smtp_starttls) == (
        "approval", "relay.corp.example", True)


def test_services_not_of_the_project_are_not_given_its_secrets():
    assert sorted(name for name, service in SERVICES.items() if "env_file" in service) == ["api", "mailer", "worker"]


def test_the_worker_registers_the_debezium_connector():
    env = SERVICES["worker"]["environment"]
    assert env["INVOICE_AUTOMATION_MARKETPLACE_SOURCE"] == "debezium"
    assert env["INVOICE_AUTOMATION_CONNECT_URL"] == "http://connect:8083"
    assert "8083" in " ".join(SERVICES["connect"]["healthcheck"]["test"])


# The variables the Debezium connect image's entrypoint reads by name (connect-base/3.6/docker-entrypoint.sh
# in debezium/container-images); every other worker property must be a CONNECT_* variable, or it is ignored.
CONNECT_SHORTCUTS = {"BOOTSTRAP_SERVERS", "GROUP_ID", "CONFIG_STORAGE_TOPIC", "OFFSET_STORAGE_TOPIC",
                     "STATUS_STORAGE_TOPIC", "KEY_CONVERTER", "VALUE_CONVERTER", "REST_PORT", "REST_HOST_NAME",
                     "ADVERTISED_PORT", "ADVERTISED_HOST_NAME", "HOST_NAME", "OFFSET_FLUSH_INTERVAL_MS",
                     "OFFSET_FLUSH_TIMEOUT_MS", "SHUTDOWN_TIMEOUT", "HEAP_OPTS", "LOG_LEVEL"}


def test_connect_is_given_only_variables_its_image_reads_and_one_replica_for_its_topics():
    """CONFIG_STORAGE_REPLICATION_FACTOR and its kind were ignored: the replicas were whatever the
    image's properties file said."""
    env = SERVICES["connect"]["environment"]
    ignored = {name for name in env if name not in CONNECT_SHORTCUTS and not name.startswith("CONNECT_")}
    assert not ignored, f"the connect image ignores {sorted(ignored)}: name them CONNECT_<PROPERTY>"
    properties = {name.removeprefix("CONNECT_").lower().replace("_", "."): value
                  for name, value in env.items() if name.startswith("CONNECT_")}
    for topic in ("config", "offset", "status"):
        assert properties[f"{topic}.storage.replication.factor"] == 1  # the one broker


def test_the_pinned_images_and_the_project_image_built_with_the_tested_constraints():
    for name, service in SERVICES.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image {image} is not pinned"
    assert SERVICES["kafka"]["image"] == "apache/kafka:4.3.1"
    assert SERVICES["connect"]["image"].endswith(":3.6.1.Final")
    built = {name for name, service in SERVICES.items() if service.get("build", {}).get("context") == "."}
    assert built == {"mail", "worker", "mailer", "api"}
    assert "--constraint constraints.txt" in (ROOT / "Dockerfile").read_text()


def test_the_project_image_installs_the_rocksdb_extra_and_when_asked_the_mssql_one_with_its_libraries():
    """STORE=rocksdb://, which the README recommends, failed in the image: it installed no extra."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    default = re.search(r"^ARG EXTRAS=(\S+)$", dockerfile, re.MULTILINE)[1].split(",")
    assert "rocksdb" in default and set(default) <= set(extras) - {"test"}
    assert 'pip install --no-cache-dir --constraint constraints.txt ".[${EXTRAS}]"' in dockerfile
    mssql = re.search(r"\*,mssql,\*\)(.*?);;", dockerfile, re.DOTALL)[1]  # what EXTRAS=...,mssql adds
    assert "apt-get install" in mssql and {"unixodbc", "libgssapi-krb5-2"} <= set(mssql.split())


@pytest.mark.parametrize(("dot_env", "extras"), [({}, "rocksdb"), ({"EXTRAS": "rocksdb,mssql"}, "rocksdb,mssql")],
                         ids=["default", "mssql"])
def test_every_service_built_from_the_project_builds_it_with_the_extras_of_dot_env(dot_env, extras):
    """`docker compose build --build-arg EXTRAS=rocksdb,mssql`, then `docker compose up -d --build`
    as the README said: the second built the image again without the argument, the Dockerfile's
    rocksdb alone, and every read of a Sampro on SQL Server failed without its ODBC driver."""
    services = _load("docker-compose.yml", {**DOT_ENV, **dot_env})["services"]
    builds = {name: service["build"] for name, service in services.items() if "build" in service}
    assert builds == dict.fromkeys(["mail", "worker", "mailer", "api"], {"context": ".", "args": {"EXTRAS": extras}})
    readme = (ROOT / "README.md").read_text()
    assert "`EXTRAS=rocksdb,mssql` in `.env`" in readme and "--build-arg EXTRAS" not in readme
    assert "\n# EXTRAS=rocksdb,mssql\n" in (ROOT / ".env.example").read_text()


def _ddl(table) -> list[str]:
    dialect = postgresql.dialect()
    return [str(CreateTable(table).compile(dialect=dialect)),
            *(str(CreateIndex(index).compile(dialect=dialect)) for index in table.indexes)]


def _words(sql: str) -> str:
    return " ".join(re.sub(r"\s*([(),;])\s*", r" \1 ", sql).split())


def test_postgres_is_initialised_with_the_marketplace_table_and_the_sampro_schema():
    postgres = SERVICES["postgres"]
    assert "wal_level=logical" in postgres["command"]
    mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in postgres["volumes"]}
    init = ROOT / mounted["/docker-entrypoint-initdb.d/init-databases.sql"]
    sql = _words(re.sub(r"--[^\n]*", "", init.read_text()))
    assert "ALTER TABLE marketplace_invoices REPLICA IDENTITY FULL ;" in sql
    tables = sampro_tables()
    for table in (marketplace_invoices, tables.po_header, tables.po_line, tables.ap_invoice):
        for statement in _ddl(table):
            assert _words(statement) in sql, f"{init.name} differs from the code; it should say:\n{statement}"
    assert sql.index("\\connect marketplace") < sql.index("CREATE TABLE marketplace_invoices") < sql.index(
        "\\connect sampro") < sql.index("CREATE TABLE po_header")


def test_every_project_setting_named_exists():
    known = {f"INVOICE_AUTOMATION_{name.upper()}" for name in Settings.model_fields}
    environments = [service.get("environment", {}) for service in SERVICES.values()]
    named = {key for env in environments for key in env if key.startswith("INVOICE_AUTOMATION_")}
    assert named, "the compose file names no settings"
    assert named <= known, f"unknown settings: {sorted(named - known)}"


def test_every_project_command_and_file_named_exists():
    commands = {command.name or command.callback.__name__ for command in app.registered_commands}
    commands |= {group.name for group in app.registered_groups}
    for name, service in SERVICES.items():
        command = service.get("command", [])
        if command[:1] == ["invoice-automation"]:
            assert command[1] in commands, f"service {name} runs `invoice-automation {command[1]}`: no such command"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"service {name} mounts {volume}, which is missing"
            else:
                assert source in COMPOSE["volumes"], f"service {name} mounts the undeclared volume {source}"


def test_the_worker_keeps_its_ledgers_in_rocksdb_which_the_image_it_builds_has():
    """In memory, every invoice a PO ever had stayed in the worker's RSS, about 1 kB each (README)."""
    worker = COMPOSE["services"]["worker"]
    assert Settings.model_validate({"store": worker["environment"]["INVOICE_AUTOMATION_STORE"]}).store == "rocksdb://"
    assert "rocksdb" in worker["build"]["args"]["EXTRAS"].split(",")
