"""Quiet, observable operations: a dependency that is down is one line and exit code 2, a
misspelt setting is refused with the closest name, --version, JSON logs, librdkafka's lines once."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import socket
import sys
import tomllib
from concurrent.futures import Future
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import certifi
import pytest
from confluent_kafka import KafkaError
from packaging.licenses import canonicalize_license_expression
from pydantic import ValidationError

from cli.logs import configure_logging
from cli.main import main
from connectors.kafka_clients import OncePerProblem, client_config, kafka_logger
from devstack.stack import COMPONENTS, LocalStack, StackEndpoints
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["invoice-automation", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.mark.parametrize("command", [["explain", "MP-1001"], ["replay", "--since", "2026-11-01"],
                                     ["reprocess", "--since", "2026-11-01", "--dry-run"]])
def test_kafka_down_is_one_line_naming_where_and_what_to_check_and_exit_2(command, monkeypatch, capfd):
    monkeypatch.setattr("connectors.topic_reader.METADATA_TIMEOUT", 1.0)
    bootstrap = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("INVOICE_AUTOMATION_KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    assert _run(monkeypatch, *command) == 2
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert f"kafka does not answer (reading the offsets of invoices at {bootstrap}" in errors[0] or (
        f"at {bootstrap}" in errors[0] and errors[0].startswith("error: kafka does not answer"))
    assert errors[0].endswith("check INVOICE_AUTOMATION_KAFKA_BOOTSTRAP_SERVERS and that it runs")
    assert not any("Traceback" in line or re.match(r"%\d\|", line) for line in lines), lines  # no raw librdkafka
    assert len(lines) <= 3, lines  # librdkafka's own word on it, once per distinct problem, and ours


@pytest.mark.parametrize(("command", "said"), [
    (["api", "--port", "70000"], "Invalid value for '--port'"),
    (["demo", "--api-port", "0"], "Invalid value for '--api-port'"),
    (["stack", "up", "--only", " , "], "no component named; choose from"),
    (["stack", "down", "--root", "/etc/hostname"], "Invalid value for '--root'"),  # a traceback
])
def test_an_option_no_run_could_use_is_refused_before_anything_starts(command, said, monkeypatch, capfd, tmp_path):
    """A port past 65535 was a traceback from bind(), the demo's after its Kafka had started; a stack
    of no components started nothing and said "ready"."""
    code = _run(monkeypatch, *command, *(["--root", str(tmp_path)] if command[:2] == ["stack", "up"] else []))
    printed = capfd.readouterr()
    assert code != 0 and said in " ".join((printed.out + printed.err).split()) and "Traceback" not in printed.err


def test_a_misspelt_setting_is_refused_with_the_closest_name(monkeypatch, capsys):
    monkeypatch.setenv("INVOICE_AUTOMATION_SMTP_HOSTNAME", "mail.corp")
    monkeypatch.setenv("invoice_automation_sampro_name__po_line", "POLIN")
    with pytest.raises(ValidationError) as raised:
        Settings()
    message = str(raised.value)
    assert "INVOICE_AUTOMATION_SMTP_HOSTNAME is not a setting; did you mean INVOICE_AUTOMATION_SMTP_HOST?" in message
    assert "did you mean INVOICE_AUTOMATION_SAMPRO_NAMES__PO_LINE?" in message
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: INVOICE_AUTOMATION_SMTP_HOSTNAME is not a setting; did you mean INVOICE_AUTOMATION_SMTP_HOST?",
        "error: invoice_automation_sampro_name__po_line is not a setting; "
        "did you mean INVOICE_AUTOMATION_SAMPRO_NAMES__PO_LINE?"]


def test_a_misspelt_setting_in_the_env_file_is_refused_too(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=for-compose\nINVOICE_AUTOMATION_API_TOKN=secret\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match="INVOICE_AUTOMATION_API_TOKN is not a setting; did you mean "
                                              "INVOICE_AUTOMATION_API_TOKEN?"):
        Settings()


def test_known_and_nested_and_other_variables_pass(monkeypatch):
    monkeypatch.setenv("INVOICE_AUTOMATION_SMTP_HOST", "mail.corp")
    monkeypatch.setenv("INVOICE_AUTOMATION_SAMPRO_NAMES__PO_LINE", "POLIN")
    monkeypatch.setenv("INVOICE_AUTOMATION_CACHE", "/tmp/cache")  # devstack's download cache
    settings = Settings()
    assert settings.smtp_host == "mail.corp" and settings.sampro_names.po_line == "POLIN"


def test_a_wrong_value_is_one_line_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("INVOICE_AUTOMATION_LOG_FORMAT", "yaml")
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    assert capsys.readouterr().err == \
        "error: setting INVOICE_AUTOMATION_LOG_FORMAT='yaml': Input should be 'text' or 'json'\n"


@pytest.mark.parametrize(("name", "value", "said"), [
    ("BATCH_SIZE", "2000000", "='2000000': Input should be less than or equal to 100000"),
    ("POLL_LOOKBACK_SECONDS", "1e12", "='1e12': Input should be less than or equal to 604800"),
    ("POLL_LOOKBACK_SECONDS", "0", "='0': Input should be greater than or equal to 60"),  # lost late commits
    ("SESSION_TIMEOUT_SECONDS", "inf", "='inf': Input should be less than or equal to 1800"),
    # the brokers' group.min.session.timeout.ms (6000): every join of the group refused, nothing consumed
    ("SESSION_TIMEOUT_SECONDS", "5.999", "='5.999': Input should be greater than or equal to 6"),
    ("SMTP_PORT", "-5", "='-5': Input should be greater than or equal to 1"),
    ("RPA_MAIL_TO", "rpa-bot@ämter.example", "='rpa-bot@ämter.example': String should match pattern '^[ -~]+$'"),
    # mailed to the first address alone, while To: named both
    ("RPA_MAIL_TO", "rpa-bot@corp.example, ap-audit@corp.example", "='rpa-bot@corp.example, ap-audit@corp.example': "
                                                                   "not one email address: the RPA emails go to the "
                                                                   "bot's mailbox alone (rpa-bot@example.com, or RPA "
                                                                   "Bot <rpa-bot@example.com>)"),
    ("RPA_MAIL_TO", "rpa-bot", "='rpa-bot': not one email address: the RPA emails go to the bot's mailbox alone "
                               "(rpa-bot@example.com, or RPA Bot <rpa-bot@example.com>)"),
    ("SMTP_PASSWORD", "geheim-ß", ": SMTP AUTH (smtplib) sends the password as ASCII: other "
                                  "letters never sign in"),  # a secret: its value is not shown
    # the bot must hold the very same bytes, and a short key is guessed
    ("RPA_SIGNING_KEY", "s3cret", ": 6 characters, where the RPA signing key takes 32 to 256 (make one with "
                                  "`openssl rand -hex 32`)"),
    # .env.example's sample copied unchanged: a key anyone can read in the repository signed every email
    ("RPA_SIGNING_KEY", "replace-with-a-random-key-of-32-or-more", ": too easy to guess: at least 32 random "
                                                                   "characters (make one with `openssl rand -hex 32`)"),
    ("RPA_SIGNING_KEY", "ab" * 16, ": too easy to guess: at least 32 random characters (make one with `openssl "
                                   "rand -hex 32`)"),
    ("RPA_SIGNING_KEY", "correct horse battery staple 2026", ": printable ASCII only, without spaces: the RPA "
                                                             "bot must hold the very same bytes (make one with "
                                                             "`openssl rand -hex 32`)"),
    ("APP_ID", "ap\x1b[2J" + "x" * 100, "='ap\\x1b[2J" + "x" * 67 + "...: String should match pattern "
                                        "'^[A-Za-z0-9._-]+$'"),  # escaped, cut to 80 characters
    ("STORE", "rocksdb", "='rocksdb': Input should be 'memory://' or 'rocksdb://'"),  # a traceback after topics
    ("WORKER_HTTP_PORT", "0", "='0': Input should be greater than or equal to 1"),  # a port no one is told
    ("KAFKA_BOOTSTRAP_SERVERS", "", "='': String should have at least 1 character"),
    ("SCHEMA_REGISTRY_URL", "http://", ": not an http:// or https:// URL with a host"),
    # /readyz and /metrics listened on every interface, where unset they listen on the loopback alone
    ("WORKER_HTTP_HOST", "", "='': empty, /readyz and /metrics would listen on every interface: leave it unset "
                             "for 127.0.0.1, or write 0.0.0.0 to listen on every interface"),
    # each hand-off to the RPA bot waited, "please run connect() first", for good
    ("SMTP_HOST", " ", "=' ': empty, no email to the RPA bot could be sent: name the SMTP server (127.0.0.1 when "
                       "unset)"),
    # httpx refused the address at every registration and status check, every 30 s
    ("CONNECT_URL", "http://connect-1:8083,http://connect-2:8083", ": 2 URLs: Kafka Connect is asked at one (a "
                                                                    "comma-separated list is for SCHEMA_REGISTRY_URL)"),
    ("API_ALLOWED_ORIGINS", '["ap.example.com"]', "__0='ap.example.com': String should match pattern '^https?://[^/?#\\s]+$'"),
    ("API_USERS", '[{"name": "ana", "password_hash": "hunter2"}]',
     "__0__PASSWORD_HASH: String should match pattern '^\\$argon2(id|i|d)\\$'"),  # never signs in
])
def test_a_value_its_setting_cannot_take_is_refused_at_start(monkeypatch, capsys, name, value, said):
    """Each was taken, then failed on every step, poll or email (librdkafka's limit, an overflow)."""
    monkeypatch.setenv(f"INVOICE_AUTOMATION_{name}", value)
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    assert capsys.readouterr().err == f"error: setting INVOICE_AUTOMATION_{name}{said}\n"


@pytest.mark.parametrize("address", ["rpa-bot@corp.example", "RPA Bot <rpa-bot@corp.example>",
                                     '"Bot, RPA" <rpa-bot@corp.example>'])
def test_one_address_is_taken_for_the_rpa_mailbox_with_its_name_or_without(monkeypatch, address):
    monkeypatch.setenv("INVOICE_AUTOMATION_RPA_MAIL_TO", address)
    assert Settings(_env_file=None).rpa_mail_to == address


@pytest.mark.parametrize("addresses", ["rpa-bot@corp.example; ap-audit@corp.example", "rpa-bot@corp.example "
                                       "ap-audit@corp.example", "<>", "@corp.example", "rpa bot@corp.example"])
def test_a_list_or_no_address_for_the_rpa_mailbox_is_refused(monkeypatch, addresses):
    monkeypatch.setenv("INVOICE_AUTOMATION_RPA_MAIL_TO", addresses)
    with pytest.raises(ValidationError, match="rpa_mail_to\n  Value error, not one email address"):
        Settings(_env_file=None)


def test_a_rocksdb_store_without_its_library_is_one_line_naming_the_setting(monkeypatch, capsys):
    """It was a ModuleNotFoundError's traceback, once the worker had made its topics."""
    monkeypatch.setitem(sys.modules, "rocksdict", None)  # as where the rocksdb extra is not installed
    monkeypatch.setenv("INVOICE_AUTOMATION_STORE", "rocksdb://")
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    said = capsys.readouterr().err
    assert said.startswith("error: setting INVOICE_AUTOMATION_STORE='rocksdb://': RocksDB's library cannot be "
                           "loaded (") and said.count("\n") == 1
    assert said.endswith("): install the rocksdb extra (pip install 'invoice-automation[rocksdb]'), "
                         "or set memory://\n")


def test_a_rocksdb_store_with_its_library_is_taken(monkeypatch):
    monkeypatch.setenv("INVOICE_AUTOMATION_STORE", "rocksdb://")
    assert Settings(_env_file=None).store == "rocksdb://"  # the test extras install rocksdb's


@pytest.mark.parametrize(("variables", "said"), [
    ({"SMTP_USERNAME": "ap-robot"}, "INVOICE_AUTOMATION_SMTP_USERNAME is set without "
                                    "INVOICE_AUTOMATION_SMTP_PASSWORD: every email would fail to sign in"),
    ({"SMTP_HOST": "smtp.office365.com", "SMTP_USERNAME": "ap-robot", "SMTP_PASSWORD": "s3cret"},
     "INVOICE_AUTOMATION_SMTP_USERNAME without INVOICE_AUTOMATION_SMTP_STARTTLS=true (or SMTP_IMPLICIT_TLS) "
     "sends the password to smtp.office365.com in clear text: set it, or relay through a server on this machine"),
    ({"SMTP_CA_FILE": certifi.where()},  # a CA bundle, PEM
     "INVOICE_AUTOMATION_SMTP_CA_FILE is set without INVOICE_AUTOMATION_SMTP_STARTTLS=true (or SMTP_IMPLICIT_TLS): no "
     "certificate would be checked with it"),
    ({"SMTP_PORT": "465"},  # spoken to in clear text, an SMTPS server says nothing: "timed out"
     "INVOICE_AUTOMATION_SMTP_PORT=465 is SMTPS, which speaks TLS from its first byte: set "
     "INVOICE_AUTOMATION_SMTP_IMPLICIT_TLS=true"),
    ({"SMTP_STARTTLS": "true", "SMTP_IMPLICIT_TLS": "true"},
     "INVOICE_AUTOMATION_SMTP_STARTTLS and INVOICE_AUTOMATION_SMTP_IMPLICIT_TLS are both set: a server speaks TLS "
     "from its first byte (SMTPS, port 465) or after STARTTLS (587, 25), not both"),
    # a batch waiting out Sampro's (or processscheduler's) locks outlived Kafka's poll interval, lost its
    # partitions and began again
    ({"SAMPRO_LOCK_WAIT_SECONDS": "600"},
     "INVOICE_AUTOMATION_SAMPRO_LOCK_WAIT_SECONDS=600 and INVOICE_AUTOMATION_SCHEDULER_LOCK_WAIT_SECONDS=30, each "
     "waited twice a batch, make 1260 s, more than the 300 s a worker may take between two polls of Kafka "
     "(max.poll.interval: INVOICE_AUTOMATION_SESSION_TIMEOUT_SECONDS, 300 at the least): a batch waiting for locks "
     "would lose its partitions; keep the two at 150 s or less together"),
    ({"SCHEDULER_LOCK_WAIT_SECONDS": "121"},
     "INVOICE_AUTOMATION_SAMPRO_LOCK_WAIT_SECONDS=30 and INVOICE_AUTOMATION_SCHEDULER_LOCK_WAIT_SECONDS=121, each "
     "waited twice a batch, make 302 s, more than the 300 s a worker may take between two polls of Kafka "
     "(max.poll.interval: INVOICE_AUTOMATION_SESSION_TIMEOUT_SECONDS, 300 at the least): a batch waiting for locks "
     "would lose its partitions; keep the two at 150 s or less together"),
    ({"API_SIGN_IN_BACKOFF_SECONDS": "60", "API_SIGN_IN_BACKOFF_MAX_SECONDS": "5"},
     "INVOICE_AUTOMATION_API_SIGN_IN_BACKOFF_MAX_SECONDS is below INVOICE_AUTOMATION_API_SIGN_IN_BACKOFF_SECONDS"),
    ({"MARKETPLACE_SOURCE": "debezium", "CONNECT_URL": "http://connect:8083"},  # the default URL: SQLite
     "INVOICE_AUTOMATION_MARKETPLACE_SOURCE=debezium with INVOICE_AUTOMATION_CONNECT_URL registers a capture of "
     "PostgreSQL: INVOICE_AUTOMATION_MARKETPLACE_DB_URL must name the marketplace's PostgreSQL"),
    ({"API_USERS": '[{"name": "ana", "password_hash": "$argon2id$a", "role": "viewer"}, '
                   '{"name": "ana", "password_hash": "$argon2id$b", "role": "clerk"}]'},
     "INVOICE_AUTOMATION_API_USERS names 'ana' more than once: which password and role would be theirs?"),
    ({"DLQ_TOPIC": "invoices"},  # each dead letter failed again on the work topic, and was dead-lettered again
     "INVOICE_AUTOMATION_INVOICES_TOPIC and INVOICE_AUTOMATION_DLQ_TOPIC name the same topic 'invoices': each "
     "needs a topic of its own"),
    ({"VERDICTS_TOPIC": "ap", "RPA_REQUESTS_TOPIC": "ap", "SAMPRO_CDC_TOPIC": "ap"},
     "INVOICE_AUTOMATION_VERDICTS_TOPIC, INVOICE_AUTOMATION_RPA_REQUESTS_TOPIC and "
     "INVOICE_AUTOMATION_SAMPRO_CDC_TOPIC name the same topic 'ap': each needs a topic of its own"),
    ({"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_USERNAME": "ap"},  # every client retried for good
     "INVOICE_AUTOMATION_KAFKA_SECURITY_PROTOCOL=SASL_SSL signs in with SASL: set "
     "INVOICE_AUTOMATION_KAFKA_SASL_MECHANISM, INVOICE_AUTOMATION_KAFKA_SASL_PASSWORD"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "b-1.msk.example.com:9096", "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
      "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "ap", "KAFKA_SASL_PASSWORD": "s3cret"},
     "INVOICE_AUTOMATION_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT with SASL PLAIN sends the password to "
     "b-1.msk.example.com:9096 in clear text: use SASL_SSL"),
    ({"APP_ID": "ap", "SAMPRO_CHANGES_TOPIC": "ap-po-ledgers-changelog"},
     "INVOICE_AUTOMATION_SAMPRO_CHANGES_TOPIC names 'ap-po-ledgers-changelog', the topic of the PO ledgers' "
     "changelog (INVOICE_AUTOMATION_APP_ID and '-po-ledgers-changelog'): each needs a topic of its own"),
])
def test_settings_that_cannot_work_together_are_refused_at_start_naming_both(monkeypatch, capsys, variables, said):
    """Each alone is fine: together the worker failed every email, a guesser waited less than the
    first back-off, or the last of two users named ana gave her a clerk's rights."""
    for name, value in variables.items():
        monkeypatch.setenv(f"INVOICE_AUTOMATION_{name}", value)
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    assert capsys.readouterr().err == f"error: {said}\n"


def test_an_allowed_origin_is_read_as_a_browser_sends_it(monkeypatch):
    monkeypatch.setenv("INVOICE_AUTOMATION_API_ALLOWED_ORIGINS", '["HTTPS://AP.example.com/", " http://ap:8080"]')
    assert Settings(_env_file=None).api_allowed_origins == ["https://ap.example.com", "http://ap:8080"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]"])
def test_a_password_may_go_without_tls_only_to_a_relay_on_this_machine(monkeypatch, host):
    for name, value in {"SMTP_HOST": host, "SMTP_USERNAME": "ap-robot", "SMTP_PASSWORD": "s3cret"}.items():
        monkeypatch.setenv(f"INVOICE_AUTOMATION_{name}", value)
    assert Settings(_env_file=None).smtp_username == "ap-robot"


def test_an_empty_smtp_user_name_or_ca_file_means_none(monkeypatch):
    monkeypatch.setenv("INVOICE_AUTOMATION_SMTP_USERNAME", "")
    monkeypatch.setenv("INVOICE_AUTOMATION_SMTP_CA_FILE", "")
    settings = Settings(_env_file=None)
    assert settings.smtp_username is None and settings.smtp_ca_file is None


@pytest.mark.parametrize("value", ["notjson", "", "[{"])
def test_a_json_setting_that_is_not_json_is_one_line_that_does_not_echo_it(monkeypatch, capsys, value):
    monkeypatch.setenv("INVOICE_AUTOMATION_API_USERS", value)
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    err = capsys.readouterr().err
    assert err == "error: setting INVOICE_AUTOMATION_API_USERS: not JSON (a JSON list or object: see " \
                  "streams/settings.py)\n"


def test_the_password_hash_that_mends_api_users_needs_no_settings_and_h_is_help(monkeypatch, capsys):
    """A password_hash written in clear refused every command, the one that makes the hash too."""
    monkeypatch.setenv("INVOICE_AUTOMATION_API_USERS", '[{"name": "ana", "password_hash": "secret"}]')
    assert _run(monkeypatch, "api", "hash-password", "--password", "s3cret") == 0
    assert capsys.readouterr().out.startswith("$argon2id$")
    assert _run(monkeypatch, "replay", "-h") == 0
    shown = capsys.readouterr().out
    assert "-h, --help" in shown and "--fail-on-change  " in shown and "<bool>" not in shown
    assert _run(monkeypatch, "explain", "MP-1") == 2  # every other command still reads them first
    assert "INVOICE_AUTOMATION_API_USERS" in capsys.readouterr().err


def test_an_invoice_id_that_is_not_utf8_is_one_line_and_exit_2(monkeypatch, capsys):
    """Latin-1 pasted into a UTF-8 terminal: Python keeps the byte as a surrogate, and the first
    encode of the id was a traceback."""
    assert _run(monkeypatch, "explain", "MP-1001\udce9") == 2
    assert capsys.readouterr().err == ("error: invoice id 'MP-1001\\udce9': not UTF-8 text (byte 0xe9 at position "
                                       "8); type it again in a UTF-8 terminal\n")


def test_help_needs_no_settings_and_an_unknown_log_level_names_the_choices(monkeypatch, capsys):
    monkeypatch.setenv("INVOICE_AUTOMATION_API_USERS", "notjson")
    assert _run(monkeypatch, "api", "hash-password", "--help") == 0
    assert "hash-password" in capsys.readouterr().out
    monkeypatch.delenv("INVOICE_AUTOMATION_API_USERS")
    levels = []

    def configured(level: str, log_format: str) -> None:
        levels.append(level)
        if level != "warning":  # the worker's own, once its options are read: stop there
            raise SystemExit(7)

    monkeypatch.setattr("cli.logs.configure_logging", configured)
    assert _run(monkeypatch, "worker", "--loglevel", "INFO") == 7 and levels == ["warning", "info"]  # any case
    assert _run(monkeypatch, "worker", "--loglevel", "verbose") == 2
    said = " ".join(capsys.readouterr().err.replace("│", " ").split())  # as rich boxes it
    assert "'verbose' is not one of 'debug', 'info', 'warning', 'error'" in said


@pytest.mark.parametrize(("name", "value", "said"), [
    ("SAMPRO_DB_URL", "postgresql+psycopg://ap:Secr3t@Tail@db/sampro", "an '@' in the user or password must be "
                                                                       "written %40"),
    ("SCHEDULER_DB_URL", "ap:Secr3t@db/scheduler", "not a database URL"),
    # its '@host' left out: the password read as the port, and int()'s message quoted it
    ("SAMPRO_DB_URL", "mssql+pyodbc://svc_ap:Secr3t/sampro", "its port is not a number"),
    ("SCHEMA_REGISTRY_URL", "ap:Secr3t@registry:8081", "not an http:// or https:// URL"),
])
def test_a_url_that_cannot_be_one_is_named_at_start_without_its_password(monkeypatch, capsys, name, value, said):
    """'Tail@db' was taken for the host: its connection error, logged and shown by /readyz, held
    part of the password; a registry URL without its scheme was a traceback holding all of it."""
    monkeypatch.setenv(f"INVOICE_AUTOMATION_{name}", value)
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: setting INVOICE_AUTOMATION_{name}: {said}") and "Secr3t" not in err
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "Secr3t" not in str(raised.value)


@pytest.mark.parametrize(("name", "value", "said"), [
    ("SAMPRO_NAMES__COLUMNS", '{"po_number": ""}', "setting INVOICE_AUTOMATION_SAMPRO_NAMES__COLUMNS__PO_NUMBER='': "
                                                   "String should have at least 1 character"),
    ("SAMPRO_NAMES__PO_HEADER_COLUMNS", '{"vendor_id": "status"}', "setting INVOICE_AUTOMATION_SAMPRO_NAMES={"
                                                                   "'po_header_columns': {'vendor_id': 'status'}}: "
                                                                   "po_header: two columns are renamed to 'status'"),
    ("SAMPRO_NAMES__AP_INVOICE", "po_line", "setting INVOICE_AUTOMATION_SAMPRO_NAMES={'ap_invoice': 'po_line'}: "
                                            "po_line and ap_invoice name the same table 'po_line': each needs a table "
                                            "of its own"),
    ("TOLERANCES_FILE", "/missing.toml", "setting INVOICE_AUTOMATION_TOLERANCES_FILE='/missing.toml': Path does not "
                                         "point to a file"),
    ("VERDICTS_TOPIC", "ap verdicts", "setting INVOICE_AUTOMATION_VERDICTS_TOPIC='ap verdicts': String should match "
                                      "pattern "
                                      "'^[A-Za-z0-9._-]+$'"),
])
def test_sampro_names_and_the_tolerances_file_are_named_at_start(monkeypatch, capsys, name, value, said):
    """Each was a traceback at start naming no setting (ArgumentError, DuplicateColumnError,
    InvalidRequestError for a table defined twice, FileNotFoundError)."""
    monkeypatch.setenv(f"INVOICE_AUTOMATION_{name}", value)
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    assert capsys.readouterr().err == f"error: {said}\n"


@pytest.mark.parametrize(("content", "said"), [
    (b'[default]\nprice_pct = 1.5%\n', "not valid TOML: "),  # and tomllib's word on where
    (b"# Fran\xe7ois\n[default]\n", "not UTF-8 text (byte 6: b'\\xe7')"),
    (b'[vendors.V100]\nthree_way_match = true\n[vendors.v100]\nprice_pct = "50"\n',
     "vendors: [vendors.V100] and [vendors.v100] are one vendor id as invoices are matched (letter case, edge spaces "
     "and Unicode form aside): write one section"),
])
def test_a_tolerances_file_that_is_no_table_of_tolerances_is_named_at_start(monkeypatch, capsys, tmp_path, content,
                                                                            said):
    """The worker and the API read it at start: each was a traceback there (PolicyError), exit 1."""
    monkeypatch.chdir(tmp_path)  # a short path, shown whole
    Path("tol.toml").write_bytes(content)
    monkeypatch.setenv("INVOICE_AUTOMATION_TOLERANCES_FILE", "tol.toml")
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    said_once = capsys.readouterr().err
    assert said_once.startswith(f"error: setting INVOICE_AUTOMATION_TOLERANCES_FILE='tol.toml': {said}")
    assert said_once.count("\n") == 1


def test_an_smtp_ca_file_that_is_no_pem_is_named_at_start(monkeypatch, capsys, tmp_path):
    """A DER certificate or a JKS truststore was taken, and the mail worker stopped at start on
    ssl.SSLError's traceback (NO_CERTIFICATE_OR_CRL_FOUND), exit 1."""
    monkeypatch.chdir(tmp_path)  # a short path, shown whole
    Path("ca.der").write_bytes(b"\x30\x82\x01\x0a" + b"\x00" * 40)
    monkeypatch.setenv("INVOICE_AUTOMATION_SMTP_STARTTLS", "true")
    monkeypatch.setenv("INVOICE_AUTOMATION_SMTP_CA_FILE", "ca.der")
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    assert capsys.readouterr().err == ("error: setting INVOICE_AUTOMATION_SMTP_CA_FILE='ca.der': ca.der holds no "
                                       "certificate Python's ssl can load (NO_CERTIFICATE_OR_CRL_FOUND)\n")
    monkeypatch.setenv("INVOICE_AUTOMATION_SMTP_CA_FILE", certifi.where())
    assert Settings(_env_file=None).smtp_ca_file == Path(certifi.where())
    # OpenSSL's trusted form (RHEL's ca-bundle.trust.crt), which the mail worker's ssl loads, was refused
    first = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", Path(certifi.where()).read_text(),
                      re.DOTALL)
    assert first is not None
    Path("trust.crt").write_text(first.group(0).replace(" CERTIFICATE-----", " TRUSTED CERTIFICATE-----"))
    monkeypatch.setenv("INVOICE_AUTOMATION_SMTP_CA_FILE", "trust.crt")
    assert Settings(_env_file=None).smtp_ca_file == Path("trust.crt")


def test_version(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["invoice-automation", "--version"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"invoice-automation {version('invoice-automation')}\n"


def test_json_logs_are_one_object_per_line(capsys):
    configure_logging("warning", "json")
    logging.getLogger("invoice_automation.test").warning("sampro is down (%s)", "connection refused")
    logging.getLogger("invoice_automation.test").info("not shown at WARNING")
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["logger"] == "invoice_automation.test"
    assert record["message"] == "sampro is down (connection refused)" and "time" in record


def test_with_json_logs_the_line_a_command_ends_on_is_a_json_object_too(monkeypatch, capfd):
    """A log collector reading JSON objects took the plain `error:` line for noise, or dropped it."""
    monkeypatch.setattr("connectors.topic_reader.METADATA_TIMEOUT", 1.0)
    monkeypatch.setenv("INVOICE_AUTOMATION_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("INVOICE_AUTOMATION_LOG_FORMAT", "json")
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    records = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.strip()]
    (error,) = [record for record in records if record["logger"] == "invoice_automation"]
    assert error["level"] == "ERROR" and error["message"].startswith("kafka does not answer")
    assert _run(monkeypatch, "validate", "--invoice", "missing.json") == 2  # unusable input: the same
    (error,) = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert error["message"] == "invoice file missing.json: cannot be read (No such file or directory)"



class _FullDisk(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("command", [["settings"], ["validate-samples", "samples"],
                                     ["validate", "--invoice", "samples/01_ready_to_process/invoice.json"]])
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_stdout_on_a_full_disk_is_one_line_and_exit_2(monkeypatch, capsys, command, log_format):
    """`invoice-automation settings > /dev/full` was a traceback and exit 1, which replay gives when
    it judged nothing: a job's script read a report it never got as an empty replay."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("INVOICE_AUTOMATION_LOG_FORMAT", log_format)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(_FullDisk()), encoding="utf-8"))
    assert _run(monkeypatch, *command) == 2
    (line,) = capsys.readouterr().err.splitlines()
    said = json.loads(line)["message"] if log_format == "json" else line.removeprefix("error: ")
    assert said == "writing to stdout: No space left on device", line


def test_with_json_logs_a_setting_that_fails_is_a_json_object_too(monkeypatch, capfd):
    """The logs are set up from the settings, which failed: the commonest error at start was text."""
    monkeypatch.setenv("INVOICE_AUTOMATION_LOG_FORMAT", "json")
    monkeypatch.setenv("INVOICE_AUTOMATION_SMTP_PORT", "-5")
    assert _run(monkeypatch, "explain", "MP-1001") == 2
    (record,) = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert record["level"] == "ERROR" and record["message"].startswith("setting INVOICE_AUTOMATION_SMTP_PORT='-5'")


def test_librdkafka_lines_show_once_per_problem_and_again_after_a_quiet_while():
    now = [0.0]
    once = OncePerProblem(quiet_seconds=300, clock=lambda: now[0])

    def shown(message: str) -> bool:
        return once.filter(logging.LogRecord("librdkafka.audit", logging.ERROR, "", 0, message, None, None))

    assert shown("FAIL 127.0.0.1:9092: Connection refused (after 0ms in state CONNECT)")
    assert not shown("FAIL 127.0.0.1:9092: Connection refused "
                     "(after 12ms in state CONNECT, 3 identical error(s) suppressed)")
    assert shown("SSL handshake failed")
    now[0] = 301.0
    assert shown("FAIL 127.0.0.1:9092: Connection refused (after 5ms in state CONNECT)")


def test_every_cli_kafka_client_logs_through_python_at_warning():
    config = client_config("127.0.0.1:9092", "audit", **{"group.id": "g"})
    assert config["logger"] is kafka_logger("audit") and config["group.id"] == "g"
    assert config["logger"].level == logging.WARNING
    assert sum(isinstance(f, OncePerProblem) for f in kafka_logger("audit").filters) == 1
    for module in ("connectors/topic_reader.py", "connectors/consumer_groups.py", "connectors/pipeline_lag.py",
                   "streams/topics.py", "streams/broker.py"):
        source = (ROOT / module).read_text()
        assert not re.search(r"(Consumer|Producer|AdminClient)\(\{", source), f"{module} builds a client without logger"


def test_the_package_metadata_builds_without_deprecated_forms():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    license_expression = project["project"]["license"]
    assert isinstance(license_expression, str)  # the TOML table form is deprecated since setuptools 77
    assert canonicalize_license_expression(license_expression) == "LicenseRef-Proprietary"
    assert project["build-system"]["requires"] == ["setuptools>=77"]
    assert "editable_mode=compat" not in (ROOT / "scripts" / "bootstrap.sh").read_text()  # deprecated mode


def test_a_worker_on_topics_that_break_a_guarantee_says_what_to_change_on_one_line_and_exit_2(monkeypatch, capfd):
    """It was a traceback ending in ValueError."""
    from rules.errors import Misconfigured

    def unfit(settings):
        raise Misconfigured("the topics must take every record the worker sends, but verdicts has "
                            "compression.type=gzip")

    monkeypatch.setattr("streams.topics.ensure_topics", lambda settings: [])
    monkeypatch.setattr("streams.topics.check_co_partitioned", unfit)
    assert _run(monkeypatch, "worker") == 2
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: the topics must take every record the worker sends, but verdicts has "
                     "compression.type=gzip"]


class CreatingAdmin:
    """An admin client on a cluster without the pipeline's topics, whose broker answers each
    creation with `error` (None: created)."""

    error: object = None

    def __init__(self, config):
        pass

    def list_topics(self, timeout):
        return SimpleNamespace(topics={})

    def create_topics(self, topics, operation_timeout):
        from confluent_kafka import KafkaException

        futures = {}
        for topic in topics:
            futures[topic.topic] = Future()
            if self.error is None or topic.topic == "invoices":  # created by another worker a moment before
                futures[topic.topic].set_exception(KafkaException(KafkaError(
                    KafkaError.TOPIC_ALREADY_EXISTS, f"Topic '{topic.topic}' already exists.")))
            else:
                futures[topic.topic].set_exception(KafkaException(self.error))
        return futures

    def poll(self, timeout):
        return 0


@pytest.mark.parametrize(("error", "said"), [
    (KafkaError(KafkaError.INVALID_REPLICATION_FACTOR, "Replication factor: 3 larger than available brokers: 1."),
     "Kafka refused to create the topics marketplace.invoices, rpa.completions, po.commands, sampro.changes, "
     "verdicts, rpa.requests, invoices.dlq, invoice-automation-po-ledgers-changelog (Replication factor: 3 larger "
     "than available brokers: 1.): set INVOICE_AUTOMATION_TOPIC_REPLICATION_FACTOR=3 to no more replicas than "
     "the cluster has brokers"),
    (KafkaError(KafkaError.REQUEST_TIMED_OUT, "Request timed out", retriable=True),
     "kafka does not answer (creating the topic marketplace.invoices at 127.0.0.1:9092: Request timed out); "
     "check INVOICE_AUTOMATION_KAFKA_BOOTSTRAP_SERVERS and that it runs"),
], ids=["replicas", "timed-out"])
def test_a_topic_kafka_refuses_to_create_is_one_line_naming_the_setting(monkeypatch, capfd, error, said):
    """TOPIC_REPLICATION_FACTOR=3 on a cluster of one broker: the worker stopped at start with a
    traceback ending in KafkaException, and compose restarted it for good."""
    monkeypatch.setenv("INVOICE_AUTOMATION_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setattr(CreatingAdmin, "error", error)
    monkeypatch.setattr("streams.topics.AdminClient", CreatingAdmin)
    assert _run(monkeypatch, "worker") == 2
    assert [line for line in capfd.readouterr().err.splitlines() if line.strip()] == [f"error: {said}"]


class LateBrokers(CreatingAdmin):
    """Another worker created every topic a moment before: the brokers know them from the third listing."""

    listings = 0

    def list_topics(self, timeout):
        LateBrokers.listings += 1
        known = {name: SimpleNamespace(error=None) for name in self.created} if LateBrokers.listings > 2 else {}
        return SimpleNamespace(topics=known)

    def create_topics(self, topics, operation_timeout):
        self.created = [topic.topic for topic in topics]
        return super().create_topics(topics, operation_timeout)


def test_topics_another_worker_created_a_moment_before_are_waited_for_until_the_brokers_know_them(monkeypatch):
    """The race lost (TOPIC_ALREADY_EXISTS), the worker waited only for the topics it created
    itself, none: the check of the topics' configs that follows found them unknown, and a worker
    starting beside another on a new cluster stopped saying Kafka did not answer."""
    from streams.topics import ensure_topics

    monkeypatch.setattr("streams.topics.AdminClient", LateBrokers)
    monkeypatch.setattr(LateBrokers, "listings", 0)
    monkeypatch.setattr("streams.topics.time.sleep", lambda seconds: None)
    assert ensure_topics(Settings(_env_file=None)) == []
    assert LateBrokers.listings == 3


@pytest.mark.parametrize(("host", "port", "said"), [
    ("no-such-host.invalid", None, "WORKER_HTTP_HOST='no-such-host.invalid', INVOICE_AUTOMATION_WORKER_HTTP_PORT="),
    ("127.0.0.1", "taken", "WORKER_HTTP_HOST='127.0.0.1', INVOICE_AUTOMATION_WORKER_HTTP_PORT="),
])
def test_a_worker_that_cannot_serve_its_readiness_says_where_in_one_line(host, port, said):
    """A host that does not resolve, or a port taken: a traceback that named neither setting."""
    from cli.failures import explain
    from rules.errors import Misconfigured
    from streams.health import WorkerHealth, serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = taken.getsockname()[1] if port == "taken" else _closed_port()
        with pytest.raises(Misconfigured) as raised:
            serve(WorkerHealth(), host, number)
    (line,) = explain(raised.value)
    assert line.startswith(f"the worker cannot serve /readyz and /metrics on INVOICE_AUTOMATION_{said}{number}: ")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_api_its_settings_leave_open_is_refused_in_one_error_line(monkeypatch, capfd, log_format):
    """It said why without `error:` and, with LOG_FORMAT=json, as plain text a log collector dropped."""
    monkeypatch.setenv("INVOICE_AUTOMATION_LOG_FORMAT", log_format)
    monkeypatch.delenv("INVOICE_AUTOMATION_API_TOKEN", raising=False)
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: pytest.fail("the API started"))
    assert _run(monkeypatch, "api") == 2
    (line,) = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    said = "error: " + json.loads(line)["message"] if log_format == "json" else line
    assert said.startswith("error: the API does not start: INVOICE_AUTOMATION_API_TOKEN is not set"), line


@pytest.mark.parametrize(("host", "said"), [("127.0.0.1", "--port {port}: address already in use"),
                                            ("no-such-host.invalid", "--host no-such-host.invalid: does not resolve")])
def test_an_api_that_cannot_listen_there_says_which_option_in_one_line_and_exit_2(monkeypatch, capfd, host, said):
    """A port taken was uvicorn's own line ("[Errno 98] error while attempting to bind ..."), and exit 3."""
    monkeypatch.setattr("api.app.create_app", lambda: object())
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: pytest.fail("uvicorn was asked to listen"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert _run(monkeypatch, "api", "--host", host, "--port", str(port)) == 2
    (line,) = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert line.startswith("error: " + said.format(port=port)), line


@pytest.mark.parametrize("command", [["demo", "--once"], ["stack", "install"], ["stack", "up", "--root", "{tmp}"]])
def test_the_local_stack_failing_is_one_line_and_exit_2(command, monkeypatch, capsys, tmp_path):
    """`demo` and `stack down` printed a traceback ending in StackError: Maven (mvn) is not on PATH;
    `stack install` and `stack up` printed it on stdout, exit 1, where a log collector took no error."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn, no java
    monkeypatch.setenv("INVOICE_AUTOMATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("devstack.install.install_postgres", lambda: False)
    assert _run(monkeypatch, *(part.format(tmp=tmp_path) for part in command)) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    (line,) = printed.err.strip().splitlines()
    assert line == "error: Maven (mvn) is not on PATH: install Maven 3 and Java 17 to run the local stack."


def test_stack_status_in_a_pipe_is_one_line_a_component(monkeypatch, capsys, tmp_path):
    """Folded at 80 columns in a pipe, PostgreSQL's address took three lines: `stack status | grep
    postgres` showed a third of it."""
    (tmp_path / ".stack").mkdir()
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(LocalStack, "status", lambda self: {name: {"running": True} for name in COMPONENTS})
    url = "postgresql+psycopg://invoice_automation@127.0.0.1:55432/marketplace"
    monkeypatch.setattr(LocalStack, "endpoints", lambda self: StackEndpoints(marketplace_db_url=url))
    assert _run(monkeypatch, "stack", "status", "--root", str(tmp_path)) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "postgres" in line]
    assert "postgresql+psycopg://invoice_automation@127.0.0.1:55432/{marketplace,sampro,scheduler}" in line


def test_stack_status_from_a_folder_no_stack_was_started_from_says_so(monkeypatch, capsys, tmp_path):
    """It listed every component stopped while the stack ran from the project folder."""
    assert _run(monkeypatch, "stack", "status", "--root", str(tmp_path)) == 1
    assert capsys.readouterr().err.startswith(f"no stack has been started from {tmp_path}")
