"""The real local stack: Kafka, PostgreSQL, Redis, Mosquitto (and, on request, PGlite TimescaleDB).

    stack = Stack(settings)
    started = stack.up()          # starts what is not already healthy, waits, creates topics
    stack.status()                # one ServiceStatus per service, from a real protocol check
    stack.down(only=started)      # stops only processes we started (PID file + start time match)

Several test sessions may share one state dir at once (engineers working in parallel);
`Stack.leased()` lets each of them hold the stack and the last one out stops it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from deploy.process import log_tail, port_is_open
from deploy.services import DEFAULT_SERVICES, SERVICE_TYPES, Service, ServiceBusy, StackError, kafka_java_argv
from deploy.topics import ensure_topics, ensure_users
from iotlm.settings import Settings

__all__ = ["DEFAULT_SERVICES", "SERVICE_TYPES", "ServiceStatus", "Stack", "StackError", "kafka_java_argv"]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    healthy: bool
    address: str
    pid: int | None  # our process, or None when not started by this stack (or not running)
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


class Stack:
    """The local services of one state dir, started detached so they outlive this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: dict[str, Service] = {name: cls(settings) for name, cls in SERVICE_TYPES.items()}
        self.run_dir = settings.state_dir / "run"

    def _select(self, names: list[str] | None, default: tuple[str, ...]) -> list[Service]:
        chosen = list(default) if not names else list(dict.fromkeys(names))
        unknown = [n for n in chosen if n not in self.services]
        if unknown:
            raise StackError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(self.services)}")
        return [self.services[n] for n in chosen]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One `up`/`down` at a time per state dir, across processes."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / "stack.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ---- health ---------------------------------------------------------------------------
    def check(self, service: Service) -> ServiceStatus:
        proc = service.process.running()
        pid = proc.pid if proc else None
        if not port_is_open(service.host, service.port):
            detail = "starting (port not open yet)" if proc else "not running"
            return ServiceStatus(service.name, False, service.address, pid, detail)
        try:
            detail = service.check()
            return ServiceStatus(service.name, True, service.address, pid, detail)
        except ServiceBusy as busy:
            return ServiceStatus(service.name, True, service.address, pid, str(busy))
        except Exception as exc:  # any protocol failure means "not healthy", with the reason shown
            return ServiceStatus(service.name, False, service.address, pid, f"{type(exc).__name__}: {exc}")

    def status(self, services: list[str] | None = None) -> list[ServiceStatus]:
        """Every service (or the named ones), each checked with its own protocol."""
        return [self.check(s) for s in self._select(services, tuple(self.services))]

    # ---- up -------------------------------------------------------------------------------
    def up(self, services: list[str] | None = None, progress: Callable[[str], None] | None = None) -> list[str]:
        """Start the default services (or the named ones) that are not healthy yet; wait until all
        are healthy; make sure the Kafka topics exist. Returns the names this call started.
        `progress`, if given, is told each step in a few words (the CLI shows them)."""
        with self._locked():
            return self._up(services, progress or (lambda _step: None))

    def _up(self, services: list[str] | None, progress: Callable[[str], None] = lambda _step: None) -> list[str]:
        chosen = self._select(services, DEFAULT_SERVICES)
        started: list[Service] = []
        waiting: list[Service] = []
        try:
            for service in chosen:
                state = self.check(service)
                if state.healthy:
                    continue
                if state.pid is not None:  # ours, still starting (or stuck: the wait below tells)
                    launched = service.process.record()
                    if launched and launched.address and launched.address != (service.host, service.port):
                        # Started with other settings: waiting for it on this port would only time out.
                        raise StackError(
                            f"{service.name}: our process {state.pid} listens on "
                            f"{launched.address[0]}:{launched.address[1]}, not on {service.address} as the "
                            f"settings say; `iotlm stack down -s {service.name}` on state dir {self.settings.state_dir} "
                            "stops it (by its PID file), then `up` starts it on the new port"
                        )
                    waiting.append(service)
                    continue
                if port_is_open(service.host, service.port):
                    raise StackError(
                        f"{service.name}: {service.address} is taken by a program that is not a healthy "
                        f"{service.name} ({state.detail}); stop it or choose another port in the settings"
                    )
                progress(f"preparing {service.name}")
                service.prepare()
                service.launch()
                started.append(service)
            deadline = time.monotonic() + self.settings.stack.start_timeout_s
            for service in started:
                progress(f"waiting for {service.name} on {service.address}")
                self._wait_healthy(service, deadline, stop_if_late=True)
            for service in waiting:  # started by an earlier call: report, never kill
                progress(f"waiting for {service.name} on {service.address}")
                self._wait_healthy(service, deadline, stop_if_late=False)
            postgres = self.services["postgres"]
            if postgres in chosen:
                progress("creating PostgreSQL roles")
                postgres.ensure_roles()
            redis = self.services["redis"]
            if redis in chosen and redis not in started:  # already running: new passwords apply live
                redis.reload_acl()
            if any(s.name == "kafka" for s in chosen):
                progress("creating Kafka users, topics and ACLs")
                ensure_users(self.settings)
                ensure_topics(self.settings)
        except BaseException:
            # All or nothing: a half-started stack would leak processes nobody knows to stop.
            self._down([s.name for s in started])
            raise
        return [s.name for s in started]

    def _wait_healthy(self, service: Service, deadline: float, stop_if_late: bool) -> None:
        while True:
            state = self.check(service)
            if state.healthy:
                return
            if state.pid is None:
                raise StackError(
                    f"{service.name} exited during start-up ({state.detail}); last lines of "
                    f"{service.process.log_file}:\n{log_tail(service.process.log_file)}"
                )
            if time.monotonic() > deadline:
                if stop_if_late:
                    service.process.stop(service.stop_signal, service.stop_grace_s)
                raise StackError(
                    f"{service.name} not healthy after {self.settings.stack.start_timeout_s:.0f} s "
                    f"({state.detail}){', stopped it' if stop_if_late else ''}; "
                    f"last lines of {service.process.log_file}:\n"
                    f"{log_tail(service.process.log_file)}"
                )
            time.sleep(0.5)

    # ---- down -----------------------------------------------------------------------------
    def down(self, only: list[str] | None = None) -> list[str]:
        """Stop the processes this stack started (all, or those named); returns the names stopped.
        A service we did not start (no PID file of ours) is never touched."""
        with self._locked():
            return self._down(only)

    def _down(self, only: list[str] | None) -> list[str]:
        if only is not None and not only:
            return []
        # Signal all first, then wait: Kafka's controlled shutdown overlaps the others'.
        stopping = []
        for service in reversed(self._select(only, tuple(self.services))):
            record = service.process.request_stop(service.stop_signal)
            if record is not None:
                stopping.append((service, record))
        for service, record in stopping:
            if not service.process.await_stop(record, service.stop_grace_s):
                raise StackError(f"{service.name}: stopped our process but {record.address} is still in use")
        return [service.name for service, _ in stopping]

    # ---- shared use -----------------------------------------------------------------------
    @contextmanager
    def leased(self, services: list[str] | None = None) -> Iterator[Stack]:
        """Hold the stack for the duration of a block: `up` on entry; on exit, if no other live
        process still holds a lease on this state dir, stop everything that leases started."""
        leases = self.run_dir / "leases"
        lease = leases / f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
        ledger = self.run_dir / "leased-services.json"
        with self._locked():
            leases.mkdir(parents=True, exist_ok=True)
            lease.write_text(json.dumps({"pid": os.getpid(), "started_at": psutil.Process().create_time()}))
            try:
                started = self._up(services)
            except BaseException:
                lease.unlink(missing_ok=True)
                raise
            recorded = set(json.loads(ledger.read_text())) if ledger.exists() else set()
            ledger.write_text(json.dumps(sorted(recorded | set(started))))
        try:
            yield self
        finally:
            with self._locked():
                lease.unlink(missing_ok=True)
                if not any(_lease_alive(other) for other in leases.iterdir()):
                    recorded = json.loads(ledger.read_text()) if ledger.exists() else []
                    self._down(recorded)
                    ledger.unlink(missing_ok=True)


def _lease_alive(lease: Path) -> bool:
    """A lease counts while its holder process lives; a crashed holder's lease is cleared."""
    try:
        data = json.loads(lease.read_text())
        alive = abs(psutil.Process(int(data["pid"])).create_time() - float(data["started_at"])) <= 1.0
    except (psutil.Error, ValueError, KeyError, FileNotFoundError):
        alive = False
    if not alive:
        lease.unlink(missing_ok=True)
    return alive
