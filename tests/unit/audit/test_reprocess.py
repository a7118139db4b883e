"""`reprocess` plans on the pipeline's group: rewinds only, and never under a running worker."""

from __future__ import annotations

import pytest

from audit.reprocess import execute, plan
from connectors.consumer_groups import GroupIsActive, InMemoryConsumerGroups
from connectors.topic_reader import InMemoryTopicReader

T0 = 1_795_000_000_000


@pytest.fixture
def invoices() -> InMemoryTopicReader:
    reader = InMemoryTopicReader()
    for n in range(30):  # partition n % 3, one record a second
        reader.append("invoices", n % 3, T0 + n * 1000, b"PO", b"x")
    return reader


def test_the_plan_rewinds_each_partition_to_the_first_invoice_since_the_time(invoices):
    groups = InMemoryConsumerGroups(offsets={("app", "invoices", 0): 10, ("app", "invoices", 1): 4})
    rewind = plan(invoices, groups, "app", "invoices", T0 + 15_000)  # from record n=15: offsets 5, 5, 5
    assert [(p.partition, p.committed, p.rewind_to, p.end) for p in rewind.partitions] == [
        (0, 10, 5, 10), (1, 4, 5, 10), (2, None, 5, 10)]
    # Never forward: partition 2, never committed, is read from its start, invoices before the time too.
    assert [p.moves for p in rewind.partitions] == [True, False, False]
    assert [p.to_reprocess for p in rewind.partitions] == [5, 0, 0] and rewind.total == 5
    execute(groups, rewind)
    assert groups.committed("app", "invoices", [0, 1, 2]) == {0: 5, 1: 4, 2: None}


def test_a_plan_that_waited_while_the_group_moved_back_further_does_not_move_it_forward(invoices):
    """Written as planned, a plan confirmed after another operator's rewind moved the group
    forward past invoices never judged."""
    groups = InMemoryConsumerGroups(offsets={("app", "invoices", 0): 10, ("app", "invoices", 1): 10})
    waiting = plan(invoices, groups, "app", "invoices", T0 + 15_000)  # to 5, 5: at the prompt
    execute(groups, plan(invoices, groups, "app", "invoices", T0 + 3_000))  # another rewinds to 1, 1
    groups.offsets[("app", "invoices", 1)] = 8  # and the workers read on, on partition 1, to 8
    assert execute(groups, waiting) == {1: 5}
    assert groups.committed("app", "invoices", [0, 1]) == {0: 1, 1: 5}


def test_a_partition_the_workers_read_while_the_plan_waited_is_rewound_too(invoices):
    """Re-read only where the plan moved, a partition the group had committed nothing on when the
    plan was made, and that workers read on meanwhile, was left past the invoices since the time."""
    groups = InMemoryConsumerGroups(offsets={("app", "invoices", 0): 10})
    waiting = plan(invoices, groups, "app", "invoices", T0 + 15_000)  # 0 to 5; 1 and 2 never committed
    groups.offsets[("app", "invoices", 2)] = 10
    assert execute(groups, waiting) == {0: 5, 2: 5}


def test_a_running_worker_stops_the_rewind(invoices):
    groups = InMemoryConsumerGroups(running={"app": ["worker-1@host"]}, offsets={("app", "invoices", 0): 10})
    rewind = plan(invoices, groups, "app", "invoices", T0)
    assert rewind.running_members == ["worker-1@host"]
    with pytest.raises(GroupIsActive, match="worker-1@host"):
        execute(groups, rewind)
    assert groups.committed("app", "invoices", [0]) == {0: 10}


def _dry_run(monkeypatch, capsys, invoices, groups) -> tuple[str, str]:
    """`reprocess --dry-run` on these topics and offsets: what it printed, and what it warned."""
    import sys

    from cli.main import main

    monkeypatch.setattr("connectors.topic_reader.KafkaTopicReader", lambda *args, **kwargs: invoices)
    monkeypatch.setattr("connectors.consumer_groups.KafkaConsumerGroups", lambda *args, **kwargs: groups)
    monkeypatch.setenv("INVOICE_AUTOMATION_INVOICES_TOPIC", "invoices")
    monkeypatch.setattr(sys, "argv", ["invoice-automation", "reprocess", "--since", "2026-11-18T11:06:55Z",
                                      "--dry-run"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0
    printed = capsys.readouterr()
    return " ".join(printed.out.split()), " ".join(printed.err.split())


def test_the_command_says_which_partitions_it_leaves_to_be_read_from_their_start(invoices, monkeypatch, capsys):
    groups = InMemoryConsumerGroups(offsets={("invoice-automation", "invoices", 0): 10})
    said, warned = _dry_run(monkeypatch, capsys, invoices, groups)
    assert "5 offset(s) of invoices would be read again" in said
    assert "Partition(s) 1, 2: the group has committed nothing there" in said and warned == ""


def test_the_dry_run_says_its_figure_is_of_offsets_not_of_invoices(invoices, monkeypatch, capsys):
    """It said "N invoice message(s) would be processed again" of the offsets between the time and
    the group's: they hold the transactions' commit markers too (one a transaction the ingest or the
    PO agent wrote), and the PO agent's own moves and deletes told to the PO of an older version,
    none of them an invoice to judge again."""
    groups = InMemoryConsumerGroups(offsets={("invoice-automation", "invoices", 0): 10})
    said, _ = _dry_run(monkeypatch, capsys, invoices, groups)
    assert "invoice message(s)" not in said and "invoices again" not in said
    assert "offsets again" in said and "transaction markers" in said


def test_the_command_warns_when_the_group_has_no_offsets_at_all(invoices, monkeypatch, capsys):
    """After a stop of more than a week Kafka drops a group's offsets: reprocess moved nothing, and
    the workers read the whole topic again, without a word."""
    _, warned = _dry_run(monkeypatch, capsys, invoices, InMemoryConsumerGroups())
    assert "invoice-automation has no offsets on invoices at all" in warned and "offsets.retention.minutes" in warned
