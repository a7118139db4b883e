"""Which recorded pids the stack may stop: only its own processes, never one that took over a pid."""

from __future__ import annotations

import subprocess
import sys
import time

from devstack.process import runs_under


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
