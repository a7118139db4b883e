"""`invoice-automation replay` against a real verdicts topic: nothing changes under the same rules,
exactly the flips under other tolerances, exactly the records of a time range."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from typer.testing import CliRunner

from cli.main import app
from tests.unit.audit.recorded import T0_MS, recorded_verdicts, verdicts_topic

runner = CliRunner()


@pytest.fixture(scope="module")
def recorded(kafka_bootstrap):
    """The in-memory verdicts topic of the unit tests, produced to Kafka with the same timestamps."""
    memory, placed = verdicts_topic(count=900)
    topic = f"audit-{datetime.now(UTC):%H%M%S%f}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for partition, records in memory.topics["verdicts"].items():
        for r in records:
            producer.produce(topic, key=r.key, value=r.value, partition=partition, timestamp=r.timestamp_ms)
    assert producer.flush(30) == 0
    yield {"INVOICE_AUTOMATION_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "INVOICE_AUTOMATION_VERDICTS_TOPIC": topic}, placed
    admin.delete_topics([topic])


def run(env, *args):
    result = runner.invoke(app, ["replay", *args], env=env)
    assert result.exit_code == 0, result.output
    return result


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_unchanged_rules_report_no_difference(recorded, tmp_path):
    env, placed = recorded
    run(env, "--format", "json", "--output", str(tmp_path / "r.json"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdicts"] == len(recorded_verdicts(placed)) and report["changed"] == 0


def test_a_changed_tolerance_reports_exactly_the_invoices_that_flip(recorded, tmp_path):
    env, placed = recorded
    lenient = tmp_path / "lenient.toml"
    lenient.write_text('[default]\nprice_abs = "0.10"\n')
    result = run(env, "--tolerances", str(lenient), "--format", "csv")
    rows = [line.split(",") for line in result.stdout.strip().splitlines()]
    header, rows = rows[0], rows[1:]
    status = {name: header.index(name) for name in ("invoice_id", "recorded_status", "rederived_status")}
    flipped = {r[status["invoice_id"]] for r in rows if r[status["recorded_status"]] != r[status["rederived_status"]]}
    price_only = {v.invoice_id for v in recorded_verdicts(placed) if [x.code for x in v.reasons] == ["PRICE_MISMATCH"]}
    assert flipped == price_only and price_only
    assert "manual_review" in result.stderr and "ready_to_process" in result.stderr  # the summary table


def test_a_time_range_selects_exactly_the_records_inside_it(recorded, tmp_path):
    env, placed = recorded
    since, until = T0_MS + 700 * 10, T0_MS + 1400 * 10
    run(env, "--since", iso(since), "--until", iso(until), "--format", "json", "--output", str(tmp_path / "r.json"))
    report = json.loads((tmp_path / "r.json").read_text())
    inside = sorted((m.invoice_id, m.invoice_version) for at, m in placed
                    if since <= at < until and type(m).__name__ == "Verdict")
    assert sorted((i["invoice_id"], i["invoice_version"]) for i in report["items"]) == inside
    assert report["records_read"] == 700


def test_bad_input_is_named(recorded):
    env, _ = recorded
    result = runner.invoke(app, ["replay", "--since", "last tuesday"], env=env)
    assert result.exit_code == 2 and "--since 'last tuesday'" in result.output
    result = runner.invoke(app, ["replay"], env={**env, "INVOICE_AUTOMATION_VERDICTS_TOPIC": "no-such-topic"})
    assert result.exit_code == 2 and "no-such-topic" in result.output
