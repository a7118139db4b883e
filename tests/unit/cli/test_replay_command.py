"""`invoice-automation replay` as an auditor or a CI job runs it, on a verdicts topic in memory:
options that cannot mean anything are refused before the topic is read, the exit code says
whether the replay judged what it was asked, and a report is written whole or not at all."""

from __future__ import annotations

import errno
import io
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import main
from connectors.topic_reader import InMemoryTopicReader
from tests.unit.audit.recorded import verdicts_topic

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def topic(monkeypatch):
    reader, placed = verdicts_topic(count=60)
    monkeypatch.setattr("connectors.topic_reader.KafkaTopicReader", lambda *args, **kwargs: reader)
    monkeypatch.setenv("INVOICE_AUTOMATION_VERDICTS_TOPIC", "verdicts")
    return reader, placed


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["invoice-automation", "replay", "--workers", "1", *args])
    try:
        main()
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    return code, " ".join(capsys.readouterr().err.split())  # rich wraps at the terminal's width


@pytest.mark.parametrize(("args", "said"), [
    (["--workers", "0"], "error: --workers 0: from 1 to"),
    (["--workers", "999"], "error: --workers 999: from 1 to"),
    (["--since", "1970-01-01", "--until", "1970-01-01"], "error: --until '1970-01-01' is not after --since"),
    (["--until", "1969-12-31T23:59:59"], "error: --until '1969-12-31T23:59:59': before 1970-01-01"),
    (["--invoice", " "], "error: --invoice ' ': empty"),
    (["--format", "csv", "--output", "{tmp}/report.json"], "a .json file for a csv report; name it .csv"),
    (["--format", "json", "--output", "{tmp}"], ": a folder"),
    (["--output", "{tmp}/no/such/folder/report.json"], ": no folder to write it in"),
])
def test_an_option_that_cannot_mean_anything_is_refused_naming_it_before_the_topic_is_read(
        monkeypatch, capsys, tmp_path, args, said):
    """Each was taken: 202 processes on two cores, a whole topic read for 1969, a traceback after the run."""
    monkeypatch.setattr("audit.replay.replay", lambda *a, **k: pytest.fail("the topic was read"))
    code, err = _run(monkeypatch, capsys, *[arg.replace("{tmp}", str(tmp_path)) for arg in args])
    assert code == 2 and said in err, err


def test_a_replay_that_judged_nothing_says_so_and_exits_1(monkeypatch, capsys):
    code, err = _run(monkeypatch, capsys, "--po", "po-r-0001")
    assert code == 1 and "0 verdicts judged again" in err and "no verdict was judged again" in err


def test_a_change_fails_the_run_only_when_asked(monkeypatch, capsys, tmp_path):
    lenient = tmp_path / "lenient.toml"
    lenient.write_text('[default]\nprice_abs = "0.10"\n')
    code, err = _run(monkeypatch, capsys, "--tolerances", str(lenient))
    assert code == 0 and " would change" in err and " 0 would change" not in err
    code, _ = _run(monkeypatch, capsys, "--tolerances", str(lenient), "--fail-on-change")
    assert code == 3
    code, _ = _run(monkeypatch, capsys, "--fail-on-change")
    assert code == 0  # the same rules: nothing would change


def test_the_workers_tolerances_file_is_what_a_replay_judges_with_unless_told_otherwise(monkeypatch, capsys, tmp_path):
    """Judged with exact matching, a gate run with the worker's settings found every verdict given
    under its tolerances changed."""
    lenient = tmp_path / "lenient.toml"
    lenient.write_text('[default]\nprice_abs = "0.10"\n')
    monkeypatch.setenv("INVOICE_AUTOMATION_TOLERANCES_FILE", str(lenient))
    assert _run(monkeypatch, capsys, "--fail-on-change")[0] == 3  # these verdicts were given without
    exact = tmp_path / "exact.toml"
    exact.write_text("[default]\n")
    assert _run(monkeypatch, capsys, "--tolerances", str(exact), "--fail-on-change")[0] == 0


def test_a_record_that_cannot_be_read_fails_the_run_unless_a_change_fails_it_first(
        monkeypatch, capsys, tmp_path, topic):
    reader, _ = topic
    reader.append("verdicts", 0, 1_795_000_000_000, b"PO-X", b"not avro")
    lenient = tmp_path / "lenient.toml"
    lenient.write_text('[default]\nprice_abs = "0.10"\n')
    code, err = _run(monkeypatch, capsys)
    assert code == 1 and "1 records undecodable" in err
    assert _run(monkeypatch, capsys, "--tolerances", str(lenient), "--fail-on-change")[0] == 3


def test_verdicts_without_their_audit_record_are_counted_and_fail_the_run_only_when_none_has_one(
        monkeypatch, capsys, topic):
    """A gate before a rules change passed (exit 0) on a topic whose verdicts it could not judge;
    the bad_invoice of an invoice the pipeline failed to judge has none either, and must not fail it."""
    from schemas.codec import SingleObjectCodec
    from tests.unit.audit.recorded import recorded_verdicts

    reader, placed = topic
    verdicts = recorded_verdicts(placed)
    old = verdicts[0].model_copy(update={"audit": None, "invoice_id": "MP-OLD"})  # no copy of verdicts[0]
    reader.append("verdicts", 0, 1_795_000_000_000, b"PO-X", SingleObjectCodec().encode(old))
    code, err = _run(monkeypatch, capsys, "--fail-on-change")
    assert code == 0 and "1 have no audit record" in err
    reader.topics["verdicts"] = {0: []}  # a topic of verdicts written before audits
    for verdict in verdicts[:3]:
        reader.append("verdicts", 0, 1_795_000_000_000, b"PO-X",
                      SingleObjectCodec().encode(verdict.model_copy(update={"audit": None})))
    code, err = _run(monkeypatch, capsys, "--fail-on-change")
    assert code == 1 and "3 verdicts judged again" in err and "3 have no audit record" in err


def test_verdicts_whose_audit_kept_only_the_same_number_are_counted_and_fail_a_gate_that_found_no_change(
        monkeypatch, capsys, topic):
    """INV42 judged by rules 2026.11.1 after INV-0042 was entered, whose audit kept no earlier
    invoice of another number: a gate passed (exit 0, nothing would change), though today's rules
    hold it POSSIBLE_DUPLICATE."""
    from schemas.codec import SingleObjectCodec
    from tests.unit.rules.builders import invoice, judge

    reader, _ = topic
    old = judge(invoice(invoice_id="MP-OLD", invoice_number="INV42")).model_copy(update={"rules_version": "2026.11.1"})
    reader.append("verdicts", 0, 1_795_000_000_000, b"PO-5001", SingleObjectCodec().encode(old))
    code, err = _run(monkeypatch, capsys)
    assert code == 0 and " 0 would change" in err and "1 judged again without the duplicate checks" in err
    code, err = _run(monkeypatch, capsys, "--fail-on-change")
    assert code == 1 and "1 judged again without the duplicate checks" in err


def test_verdicts_are_judged_again_under_the_workers_invoice_limits(monkeypatch, capsys):
    """Under the default 1,000 lines, a worker's 2,000 read as a change of rules."""
    monkeypatch.setenv("INVOICE_AUTOMATION_MAX_INVOICE_LINES", "1")
    code, err = _run(monkeypatch, capsys, "--fail-on-change")
    assert code == 3 and "(invoices of 1 lines at most)" in err and " 0 would change" not in err


def test_a_report_that_cannot_be_written_leaves_the_one_before_it_whole(monkeypatch, capsys, tmp_path):
    report = tmp_path / "replay.json"
    assert _run(monkeypatch, capsys, "--output", str(report))[0] == 0
    before = report.read_bytes()

    def disk_full(report, fmt, items, out):
        out.write(before.decode()[:100])
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr("audit.report.write", disk_full)
    code, err = _run(monkeypatch, capsys, "--output", str(report))
    assert code == 2 and f"error: --output {report}: No space left on device" in err
    assert report.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["replay.json"]


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_the_full_report_goes_to_stdout_or_to_its_file_alike(monkeypatch, capsys, tmp_path, fmt):
    """stdout and --output carry the same report, byte for byte: on a terminal, the progress bar
    takes stdout over while it runs, and a report written then went to the terminal's stderr."""
    from rich.console import Console

    monkeypatch.setattr("cli.audit.err", Console(stderr=True, force_terminal=True))
    report = tmp_path / f"replay.{fmt}"
    assert _run(monkeypatch, capsys, "--output", str(report))[0] == 0
    monkeypatch.setattr(sys, "argv", ["invoice-automation", "replay", "--workers", "1", "--format", fmt])
    with pytest.raises(SystemExit) as exited:
        main()
    printed = capsys.readouterr()
    assert exited.value.code == 0
    assert printed.out == report.read_bytes().decode()
    if fmt == "csv":
        assert printed.out.count("\n") == 61 and printed.out.startswith("invoice_id,")


class _Full(io.BytesIO):
    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _no_more_files():
    raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))


@pytest.mark.parametrize(("made", "said"), [(_Full, "writing to the report's temporary file in /nowhere (TMPDIR): "
                                                    "No space left"),
                                            (_no_more_files, "making the report's temporary file in")])
def test_a_temporary_folder_that_takes_no_more_is_said_so_and_exit_2(monkeypatch, capsys, tmp_path, made, said):
    """The report's spool on a full disk (or a tmpfs out of memory) was a traceback, and exit 1."""
    monkeypatch.setattr("audit.report.tempfile.TemporaryFile", made)
    monkeypatch.setenv("TMPDIR", "/nowhere")
    code, err = _run(monkeypatch, capsys, "--output", str(tmp_path / "replay.csv"))
    assert code == 2 and f"error: {said}" in err, err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_a_reader_that_stops_reading_the_report_ends_it_without_a_traceback(monkeypatch, capsys):
    """`replay --format csv | head`: exit 1 and no traceback (Click quiets stdout, as Python advises)."""
    def closed(report, fmt, items, out):
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    monkeypatch.setattr("audit.report.write", closed)
    code, err = _run(monkeypatch, capsys, "--format", "csv")
    assert code == 1 and "Traceback" not in err and "BrokenPipe" not in err


def test_a_report_interrupted_while_it_is_written_leaves_no_part_file(monkeypatch, capsys, tmp_path):
    def interrupted(report, fmt, items, out):
        out.write("invoice_id")
        raise KeyboardInterrupt

    monkeypatch.setattr("audit.report.write", interrupted)
    code, err = _run(monkeypatch, capsys, "--output", str(tmp_path / "replay.csv"))
    assert code == 130 and list(tmp_path.iterdir()) == []  # 128 + SIGINT, as a shell says it


def test_where_stderr_is_no_terminal_a_line_says_how_far_the_replay_is(monkeypatch, capsys):
    """The bar is not drawn in a job's log: an hour's run said nothing until its summary."""
    monkeypatch.setattr("cli.audit.SAID_EVERY", 0)
    monkeypatch.setattr("audit.replay.SLICE", 50)
    code, err = _run(monkeypatch, capsys)
    lines = re.findall(r"Judging verdicts again: ([\d,]+) of ([\d,]+) records, [\d,]+ records/s", err)
    assert code == 0 and len(lines) > 1 and lines[-1][0] == lines[-1][1], err


def test_a_report_keeps_the_permissions_of_the_one_it_replaces(monkeypatch, capsys, tmp_path):
    """A report of mode 600 (vendors' prices, PO numbers) came back 644 from the next run, readable by all."""
    report = tmp_path / "replay.csv"
    report.write_text("the report before\n")
    report.chmod(0o600)
    assert _run(monkeypatch, capsys, "--output", str(report))[0] == 0
    assert report.read_text().startswith("invoice_id,") and stat.S_IMODE(report.stat().st_mode) == 0o600


def test_a_report_to_a_link_is_written_where_the_link_points_and_the_link_stays(monkeypatch, capsys, tmp_path):
    """The link was replaced by a regular file of its name: the auditors' share kept last month's
    report, and `--output /dev/stdout` made a file of /dev/stdout for root."""
    (tmp_path / "share").mkdir()
    shared = tmp_path / "share" / "replay.csv"
    shared.write_text("last month\n")
    link = tmp_path / "replay.csv"
    link.symlink_to(shared)
    assert _run(monkeypatch, capsys, "--output", str(link))[0] == 0
    assert link.is_symlink() and shared.read_text().startswith("invoice_id,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replay.csv", "share"]
    shared.unlink()  # a link to the report still to come
    assert _run(monkeypatch, capsys, "--output", str(link))[0] == 0
    assert link.is_symlink() and shared.read_text().startswith("invoice_id,")


def test_a_report_to_a_named_pipe_goes_down_the_pipe(monkeypatch, capsys, tmp_path):
    """The pipe a reader waited on was replaced by a file, and the reader waited for ever."""
    pipe = tmp_path / "replay.csv"
    os.mkfifo(pipe)
    read: list[bytes] = []
    reader = threading.Thread(target=lambda: read.append(pipe.read_bytes()), daemon=True)
    reader.start()
    assert _run(monkeypatch, capsys, "--output", str(pipe))[0] == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(pipe.lstat().st_mode) and read and read[0].startswith(b"invoice_id,")
    assert [p.name for p in tmp_path.iterdir()] == ["replay.csv"]


def test_a_report_to_stdout_on_a_full_disk_is_one_line_and_exit_2(monkeypatch, capsys):
    """`replay --format csv > /dev/full` was a traceback and exit 1, which says the replay judged nothing."""
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(_Full(), encoding="utf-8"))
    code, err = _run(monkeypatch, capsys, "--format", "csv")
    assert code == 2 and err == "error: writing to stdout: No space left on device", err


def test_a_report_named_with_brackets_is_named_as_it_is(monkeypatch, capsys, tmp_path):
    """`--output "replay[nov].csv"` said "full report (csv): replay.csv", and the bar "Writing
    replay.csv": Rich took [nov] for markup, and the auditor looked for a file that was not there."""
    from rich.console import Console

    monkeypatch.setattr("cli.audit.err", Console(stderr=True, force_terminal=True, color_system=None, width=200))
    report = tmp_path / "replay[nov].csv"
    code, err = _run(monkeypatch, capsys, "--output", str(report))
    assert code == 0 and report.exists()
    assert f"full report (csv): {report}" in err and "Writing replay[nov].csv" in err, err


def test_a_process_killed_while_it_judges_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    """The OOM killer's SIGKILL to a judging process was a traceback and exit 1, which a CI job
    reads as "some records could not be read": the operator is told what to change."""
    from tests.unit.audit.test_replay import KilledForMemory

    reader, _ = verdicts_topic(count=60)
    monkeypatch.setattr("connectors.topic_reader.KafkaTopicReader", lambda *args, **kwargs: KilledForMemory(
        reader.topics))
    monkeypatch.setattr("audit.replay.SLICE", 10)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # two processes, on any machine
    report = tmp_path / "replay.csv"
    code, err = _run(monkeypatch, capsys, "--workers", "2", "--output", str(report))
    assert code == 2 and "Traceback" not in err, err
    assert err.endswith("error: a process judging verdicts died before it finished (2 judged at once): most likely "
                        "the system killed it for lack of memory; run it again with fewer --workers"), err
    assert not report.exists()


@dataclass
class SlowFirstSlice(InMemoryTopicReader):
    """Reads the first slice of partition 0 for two seconds, saying so in the file `started`; the
    others at once (the worker that read them then waits for more)."""

    started: str = ""

    def read(self, topic, ranges):
        if ranges.get(0, (None,))[0] == 0:
            Path(self.started).touch()
            time.sleep(2)
        yield from super().read(topic, ranges)


_INTERRUPTED = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as on a terminal, whatever started the test
import audit.replay, connectors.topic_reader
from tests.unit.audit.recorded import verdicts_topic
from tests.unit.cli.test_replay_command import SlowFirstSlice
audit.replay.SLICE = 10
reader = SlowFirstSlice(verdicts_topic(count=60)[0].topics, started=sys.argv[1])
connectors.topic_reader.KafkaTopicReader = lambda *args, **kwargs: reader
from cli.main import main
sys.argv = ["invoice-automation", "replay", "--workers", "2", "--output", sys.argv[2]]
main()
"""


def test_ctrl_c_while_processes_judge_ends_the_replay_with_130_and_nothing_else(tmp_path):
    """Ctrl-C reaches every process of the terminal's group: each worker printed its own traceback
    (KeyboardInterrupt in call_queue.get), a screen of them after a replay the auditor stopped."""
    started = tmp_path / "started"
    report = tmp_path / "out" / "replay.csv"
    report.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INVOICE_AUTOMATION_VERDICTS_TOPIC": "verdicts"}
    run = subprocess.Popen([sys.executable, "-c", _INTERRUPTED, str(started), str(report)], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the other worker is through its slices, and waits for more
        os.killpg(run.pid, signal.SIGINT)  # as a terminal's Ctrl-C
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130, err.decode()
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err.decode()
    assert list(report.parent.iterdir()) == []
