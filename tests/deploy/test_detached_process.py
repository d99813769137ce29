"""PID files that name the very process we started, and nothing else."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from deploy.process import DetachedProcess, log_tail


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[DetachedProcess]:
    process = DetachedProcess(pid_file=tmp_path / "run" / "sleeper.pid", log_file=tmp_path / "logs" / "sleeper.log")
    yield process
    process.stop(signal.SIGKILL, grace_s=1)


class TestDetachedProcess:
    def test_start_is_detached_logged_and_stoppable(self, sleeper: DetachedProcess):
        proc = sleeper.start([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"])
        assert sleeper.running().pid == proc.pid
        assert os.getsid(proc.pid) == proc.pid  # its own session: it outlives the CLI that started it
        assert sleeper.stop(signal.SIGTERM, grace_s=5)
        assert not sleeper.pid_file.exists()
        assert "ready" in log_tail(sleeper.log_file)

    def test_ignored_sigterm_gets_sigkill_after_grace(self, sleeper: DetachedProcess):
        code = (
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(60)"
        )
        proc = sleeper.start([sys.executable, "-c", code])
        for _ in range(50):  # wait until the handler is installed
            if "up" in log_tail(sleeper.log_file):
                break
            time.sleep(0.1)
        assert sleeper.stop(signal.SIGTERM, grace_s=0.5)
        assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE

    def test_reused_pid_is_not_ours(self, sleeper: DetachedProcess):
        # This test process stands for an unrelated program that got the PID after a reboot.
        me = psutil.Process()
        sleeper.pid_file.parent.mkdir(parents=True)
        sleeper.pid_file.write_text(json.dumps({"pid": me.pid, "started_at": me.create_time() - 3600}))
        assert sleeper.running() is None
        assert sleeper.stop(signal.SIGKILL, grace_s=1) is False  # and we are still alive to assert it
        assert not sleeper.pid_file.exists()

    def test_a_large_log_is_rotated_at_start(self, tmp_path: Path):
        process = DetachedProcess(tmp_path / "run" / "p.pid", tmp_path / "logs" / "p.log", rotate_log_bytes=10)
        process.log_file.parent.mkdir(parents=True)
        process.log_file.write_text("an old run's long log\n")
        process.start([sys.executable, "-c", "print('new run', flush=True)"]).wait(timeout=10)
        assert "an old run" in (tmp_path / "logs" / "p.log.1").read_text()
        assert "new run" in process.log_file.read_text() and "an old run" not in process.log_file.read_text()

    def test_garbled_pid_file_means_not_running(self, sleeper: DetachedProcess):
        sleeper.pid_file.parent.mkdir(parents=True)
        sleeper.pid_file.write_text("not json")
        assert sleeper.running() is None
