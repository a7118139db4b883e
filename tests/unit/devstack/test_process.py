"""Which recorded pids the stack may stop: only its own processes, never one that took over a pid."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from devstack.process import runs_under
from devstack.stack import LocalStack, StackEndpoints


def test_a_pid_is_the_stacks_only_while_its_command_line_names_the_stack_home(tmp_path):
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(tmp_path / "kafka.properties")])
    try:
        deadline = time.monotonic() + 10  # the kernel fills in a new process's command line a moment after exec
        while not runs_under(ours.pid, tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runs_under(ours.pid, tmp_path)
        assert not runs_under(ours.pid, tmp_path / "elsewhere")
    finally:
        ours.kill()
        ours.wait()
    assert not runs_under(ours.pid, tmp_path)  # gone
    assert not runs_under(None, tmp_path)


def test_a_stack_whose_pids_are_now_other_programs_is_not_running_and_down_leaves_them(tmp_path):
    """After a reboot the recorded pids, and PostgreSQL's postmaster.pid, may be another program's:
    `up` took them for the servers, and `down` sent SIGINT to the one PostgreSQL's file named."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stack = LocalStack(tmp_path)
        data = stack.home / "postgres" / "data"
        data.mkdir(parents=True)
        (data / "postmaster.pid").write_text(f"{other.pid}\n{data}\n")
        stack._save({"postgres": {"port": 1}, "kafka": {"pid": other.pid, "port": 2, "controller_pid": other.pid},
                     "connect": {"pid": other.pid, "port": 3}})
        assert not any(component["running"] for component in stack.status().values())
        assert stack.endpoints() == StackEndpoints()
        assert stack.down() == [] and other.poll() is None  # still running, never signalled
    finally:
        other.kill()
        other.wait()


def test_a_worker_dies_with_the_demo_or_benchmark_that_started_it(tmp_path):
    """Closed with its terminal or killed, the demo left its workers running for good."""
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "from devstack.worker import dies_with_its_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True,\n"
        "                         preexec_fn=dies_with_its_parent)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n")])
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the parent never started its child"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    parent.kill()  # kill -9: no cleanup of its own runs
    parent.wait(10)
    while Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.05)


def test_down_stops_only_the_components_it_is_given(tmp_path):
    """A benchmark that started PostgreSQL stopped, at its end, the Kafka a demo beside it ran."""
    stack = LocalStack(tmp_path)
    broker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(stack.home)],
                              start_new_session=True)
    try:
        stack._save({"kafka": {"pid": broker.pid, "port": 2, "controller_pid": broker.pid}})
        # Seen once with its command line not yet the sleeper's, in a full run on a loaded machine.
        deadline = time.monotonic() + 10
        while not runs_under(broker.pid, stack.home):
            assert time.monotonic() < deadline, Path(f"/proc/{broker.pid}/cmdline").read_bytes()
            time.sleep(0.05)
        assert stack.not_running(("postgres", "kafka")) == ("postgres",)
        assert stack.down(("postgres",)) == [] and broker.poll() is None
        assert stack.status()["kafka"]["running"]
        assert stack.down(("kafka",)) == ["kafka"]
        broker.wait(10)
        assert not stack.status()["kafka"]["running"]
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
