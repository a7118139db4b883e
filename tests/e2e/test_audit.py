"""Audit on the real pipeline: explain an invoice that was parked, released and entered; reprocess
after a change of tolerances without entering or emailing anything twice."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from confluent_kafka import Producer
from typer.testing import CliRunner

from cli.main import app
from devstack.demo import _settings_env, upload
from rules.lifecycle import ReleaseRequested
from rules.table import RULES_VERSION
from schemas.codec import SingleObjectCodec
from tests.e2e.test_pipeline import load_samples

runner = CliRunner()


def cli(pipeline, *args: str):
    return runner.invoke(app, list(args), env=_settings_env(pipeline.settings), catch_exceptions=False)


def emails_for(pipeline, invoice_id: str) -> int:
    return sum(1 for m in pipeline.mailbox.mailbox.messages
               if json.loads(m.get_body(("plain",)).get_content())["invoice_id"] == invoice_id)


def test_explain_tells_every_step_of_an_invoice_parked_released_and_entered(pipeline, unique_name):
    invoices, _ = load_samples(pipeline, unique_name)
    first = next(i for i in invoices if i["invoice_id"].endswith("MP-1001"))
    second = next(i for i in invoices if i["invoice_id"].endswith("MP-1010"))  # same PO: parks behind the first
    second["lines"] = [{**line, "unit_price": "3.50", "amount": "14.00"} for line in second["lines"]]
    second.update(tax_amount="1.12", total_amount="15.12")  # now off the PO price: manual_review
    pipeline.start_worker()
    upload(pipeline.settings, [first, second])
    invoice_id = second["invoice_id"]
    pipeline.wait_for(lambda: pipeline.statuses().get(invoice_id) == "waiting_for_po", what="the second invoice")
    pipeline.start_bot()  # now: else Debezium may hand the second over after the first was entered
    pipeline.wait_for(lambda: pipeline.statuses().get(invoice_id) == "manual_review", what="the parked invoice")

    release = ReleaseRequested(command_id=str(uuid.uuid4()), invoice_id=invoice_id, invoice_version=1,
                               po_number=second["po_number"], user="ana.lopez", reason="price agreed on the phone",
                               issued_at=datetime.now(UTC))
    producer = Producer({"bootstrap.servers": pipeline.settings.kafka_bootstrap_servers,
                         "partitioner": "murmur2_random"})
    producer.produce(pipeline.settings.commands_topic, key=second["po_number"].encode(),
                     value=SingleObjectCodec().encode(release))
    producer.flush(10)
    pipeline.wait_for(lambda: pipeline.statuses().get(invoice_id) == "entered", what="the released invoice")

    result = cli(pipeline, "explain", invoice_id, "--json")
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)
    told = [(s["what"], s["summary"].split(" ")[0]) for s in steps]
    # The RPA request and the sent_to_rpa change are emitted together: either may carry the earlier millisecond.
    assert [step for step in told if step[0] != "rpa request"] == [
        ("received", "version"), ("status", "waiting_for_po"), ("verdict", "manual_review"),
        ("release requested", "ana.lopez"), ("status", "released"), ("status", "sent_to_rpa"),
        ("completion", "RPA"), ("status", "entered")], told
    assert (told.index(("status", "released")) < told.index(("rpa request", "hand-off"))
            < told.index(("completion", "RPA")))
    verdict = steps[2]
    assert "PRICE_MISMATCH" in verdict["summary"]
    assert verdict["detail"]["po_snapshot"]["po_number"] == second["po_number"]
    assert "price agreed on the phone" in steps[4]["summary"]
    assert cli(pipeline, "explain", "no-such-invoice").exit_code == 2


def test_reprocess_after_a_change_of_tolerances_judges_again_without_doubling(pipeline, unique_name, tmp_path):
    invoices, _ = load_samples(pipeline, unique_name)
    ready = next(i for i in invoices if i["invoice_id"].endswith("MP-1001"))
    by_price = next(i for i in invoices if i["invoice_id"].endswith("MP-1002"))  # 15.75 against 15.50
    since = datetime.now(UTC).isoformat()
    worker = pipeline.start_worker()
    pipeline.start_bot()
    upload(pipeline.settings, [ready, by_price])
    pipeline.wait_for(lambda: (pipeline.statuses().get(ready["invoice_id"]),
                               pipeline.statuses().get(by_price["invoice_id"])) == ("entered", "manual_review"),
                      what="the first decisions")

    refused = cli(pipeline, "reprocess", "--since", since, "--yes")
    assert refused.exit_code == 1 and "refused" in refused.output
    worker.stop()
    planned = cli(pipeline, "reprocess", "--since", since, "--dry-run")
    said = " ".join(planned.output.split())  # as the console wrapped it
    assert planned.exit_code == 0 and "2 offset(s) of " in said and ".invoices would be read again" in said

    lenient = tmp_path / "lenient.toml"
    lenient.write_text('[vendors.V100]\nprice_abs = "0.25"\n')
    assert cli(pipeline, "reprocess", "--since", since, "--yes").exit_code == 0
    pipeline.settings = pipeline.settings.model_copy(update={"tolerances_file": lenient})
    pipeline.start_worker()
    pipeline.wait_for(lambda: pipeline.statuses().get(by_price["invoice_id"]) == "entered", what="the re-judged one")
    time.sleep(2)  # anything doubled would show by now
    assert emails_for(pipeline, ready["invoice_id"]) == 1 and emails_for(pipeline, by_price["invoice_id"]) == 1
    assert [h["status"] for h in pipeline.scheduler.history(ready["invoice_id"])] == [
        "ready_to_process", "sent_to_rpa", "entered"]
    row = next(r for r in pipeline.scheduler.rows() if r["invoice_id"] == by_price["invoice_id"])
    assert row["rules_version"].startswith(f"{RULES_VERSION}+tol.") and row["reasons"] == []
    assert [h["status"] for h in pipeline.scheduler.history(by_price["invoice_id"])] == [
        "manual_review", "ready_to_process", "sent_to_rpa", "entered"]
    assert Decimal(row["rpa_payload"]["lines"][0]["unit_price"]) == Decimal("15.75")
