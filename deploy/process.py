"""Detached service processes that the stack can find again, check, and stop safely.

A service is started in its own session (it outlives the `iotlm stack up` that started it) with
its output going to a log file. Its PID file records the PID *and* the process start time, so a
PID reused by the kernel for some unrelated program is never mistaken for ours and never killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def port_is_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """Ports the OS has free right now (held open together, so `count` of them are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_block(count: int, host: str = "0.0.0.0", tries: int = 50) -> int:
    """The first of `count` consecutive ports that are all free right now (workers listen on
    `metrics_port + index`: a port one above a free one may be any connection's ephemeral port)."""
    for _ in range(tries):
        first = free_ports(1, host)[0]
        sockets = [socket.socket() for _ in range(count)]
        try:
            for offset, s in enumerate(sockets):
                s.bind((host, first + offset))
            return first
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise OSError(f"no {count} consecutive free ports on {host} after {tries} tries")


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages ('' when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class PidRecord:
    """What a PID file holds: enough to recognise the very process we started."""

    pid: int
    started_at: float  # psutil create_time, seconds since the epoch
    address: tuple[str, int] | None = None  # where it listens, as launched (settings may change)

    def process(self) -> psutil.Process | None:
        """The live process this record names, or None if it is gone or the PID was reused."""
        try:
            proc = psutil.Process(self.pid)
            # create_time is rounded differently across reads; a reused PID differs by far more.
            if abs(proc.create_time() - self.started_at) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None


class DetachedProcess:
    """One service process, known by its PID file and writing to its log file."""

    def __init__(self, pid_file: Path, log_file: Path, rotate_log_bytes: int = 50 * 1024 * 1024) -> None:
        self.pid_file = pid_file
        self.log_file = log_file
        self.rotate_log_bytes = rotate_log_bytes

    def record(self) -> PidRecord | None:
        try:
            data = json.loads(self.pid_file.read_text())
            address = data.get("address")
            return PidRecord(
                pid=int(data["pid"]), started_at=float(data["started_at"]),
                address=(address[0], int(address[1])) if address else None,
            )
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def running(self) -> psutil.Process | None:
        """Our process if it is alive; a stale PID file is removed."""
        record = self.record()
        if record is None:
            return None
        proc = record.process()
        if proc is None:
            self.pid_file.unlink(missing_ok=True)
        return proc

    def start(
        self,
        argv: list[str],
        *,
        address: tuple[str, int] | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> psutil.Process:
        """Launch argv detached (new session, no stdin), appending its output to the log file.
        `address` (host, port) is recorded so that stopping it can wait for that port to free."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        # Logs append across restarts; keep one previous generation once they grow large.
        if self.log_file.exists() and self.log_file.stat().st_size > self.rotate_log_bytes:
            self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        with self.log_file.open("ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                user=user,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = psutil.Process(popen.pid)
        self.pid_file.write_text(
            json.dumps({"pid": popen.pid, "started_at": proc.create_time(), "address": address, "argv": argv})
        )
        # The service is meant to outlive this Popen: mark it handled so Popen.__del__ does not warn
        # "subprocess still running". `stop` waits for (and reaps) it through psutil instead.
        popen.returncode = 0
        return proc

    def request_stop(self, stop_signal: signal.Signals) -> PidRecord | None:
        """Send stop_signal to our process group; the record of what to wait for, or None if none ran."""
        record = self.record()
        proc = self.running()
        if record is None or proc is None:
            self.pid_file.unlink(missing_ok=True)
            return None
        self._signal_group(proc.pid, stop_signal)
        return record

    def await_stop(self, record: PidRecord, grace_s: float) -> bool:
        """Wait for a stop requested earlier (SIGKILL the group after grace_s), then for its port
        to be free. False when the port is still taken after that."""
        proc = record.process()
        if proc is not None:
            try:
                proc.wait(timeout=grace_s)
            except psutil.TimeoutExpired:
                self._signal_group(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(timeout=10)
                except psutil.TimeoutExpired:
                    pass
            except psutil.Error:
                pass
        self.pid_file.unlink(missing_ok=True)
        return record.address is None or wait_port_closed(*record.address, timeout_s=10)

    def stop(self, stop_signal: signal.Signals, grace_s: float) -> bool:
        """Stop our process (signal, wait, SIGKILL after grace_s). False when nothing of ours ran."""
        record = self.request_stop(stop_signal)
        if record is None:
            return False
        self.await_stop(record, grace_s)
        return True

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        # The service leads its own session, so the group holds its children too (postgres backends).
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_port_closed(host: str, port: int, timeout_s: float) -> bool:
    """Wait until nothing listens on host:port; True when it is free."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not port_is_open(host, port, timeout_s=0.2):
            return True
        time.sleep(0.2)
    return not port_is_open(host, port, timeout_s=0.2)
