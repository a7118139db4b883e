"""`invoice-automation explain` as an auditor runs it: a time range that cannot mean anything is
refused naming it before any topic is read, and the one given is what the topics are read over."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from audit.explain import Step, Story
from cli.main import app

runner = CliRunner()


@pytest.mark.parametrize(("args", "said"), [
    (["MP-1", "--since", "2026-12-01", "--until", "2026-11-01"], "error: --until '2026-11-01' is not after --since"),
    (["MP-1", "--since", "last week"], "error: --since 'last week': not a date"),
    (["MP-1", "--until", "1969-12-31"], "error: --until '1969-12-31': before 1970-01-01"),
    ([" "], "error: invoice id ' ': empty"),
])
def test_a_range_or_id_that_cannot_mean_anything_is_refused_before_the_topics_are_read(monkeypatch, args, said):
    monkeypatch.setattr("audit.explain.story", lambda *a, **k: pytest.fail("the topics were read"))
    result = runner.invoke(app, ["explain", *args], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and said in result.output, result.output


def test_the_topics_are_read_over_the_range_given_and_an_empty_one_says_so(monkeypatch):
    asked = {}

    def story(reader, codec, topics, invoice_id, since_ms=None, until_ms=None, **progress):
        asked.update(since_ms=since_ms, until_ms=until_ms)
        return Story()

    monkeypatch.setattr("audit.explain.story", story)
    result = runner.invoke(app, ["explain", "MP-1", "--since", "2026-11-01", "--until", "2026-11-01T12:00:00+01:00"],
                           env={"COLUMNS": "400"})
    assert asked == {"since_ms": 1_793_491_200_000, "until_ms": 1_793_491_200_000 + 11 * 3_600_000}
    assert result.exit_code == 2
    assert "nothing about it on" in result.output and "from 2026-11-01 to 2026-11-01T12:00:00+01:00" in result.output


def test_a_story_told_within_a_range_says_that_steps_outside_it_are_not_shown(monkeypatch):
    step = Step(at=datetime(2026, 12, 2, tzinfo=UTC), topic="invoices", partition=0, offset=7, invoice_version=1,
                what="received", summary="version 1")
    monkeypatch.setattr("audit.explain.story", lambda *a, **k: Story(steps=[step]))
    result = runner.invoke(app, ["explain", "MP-1", "--since", "2026-12-01"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    assert "only the records from 2026-12-01 to now: steps outside it are not shown" in result.output
    whole = runner.invoke(app, ["explain", "MP-1"], env={"COLUMNS": "400"})
    assert whole.exit_code == 0 and "not shown" not in whole.output


def test_a_story_whose_beginning_retention_deleted_exits_1_saying_where_the_partitions_start(monkeypatch):
    """It began at `status: released`, with no receipt and no verdict, and exit 0: the whole story."""
    from schemas.codec import SingleObjectCodec
    from tests.unit.audit.test_explain import retained

    reader = retained(SingleObjectCodec())
    for topic in ("rpa.completions", "po.commands", "invoices.dlq"):
        reader.topics[topic] = {0: []}
    reader.delete_records("invoices", 0, 2)
    reader.delete_records("verdicts", 0, 1)
    monkeypatch.setattr("connectors.topic_reader.KafkaTopicReader", lambda *args, **kwargs: reader)
    result = runner.invoke(app, ["explain", "MP-1001"], env={"COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    assert ("incomplete: the story has no receipt of its first version: its beginning may be among the records "
            "retention deleted from MP-1001's partitions") in result.output
    assert "incomplete: records before offset 2 of invoices[0] are gone: retention" in result.output
    assert "incomplete: records before offset 1 of verdicts[0] are gone: retention" in result.output
