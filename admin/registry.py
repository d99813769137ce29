"""The fleet as the gate and the workers see it: which devices may send, where they are, what their site
classifies against, and the alert rules in force. Read from the database, held in memory, reloaded
when a change notice arrives on the control topic (the API sends one after each change) or, as a
fallback, every `api.registry_refresh_s`.

The gate and the workers take a `FleetRegistry` from the composition root (the CLI, the demo); they
never import this module, and code only against the methods below (`refusal`, `room_of`, `get`,
`labels_for`, `rule_overrides`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import text

from admin.rules import RuleBook

log = logging.getLogger(__name__)
NOTICE_TYPE = "fleet_changed"


@dataclass(frozen=True)
class DeviceEntry:
    active: bool
    room_id: str | None
    site_id: str | None
    credentials_hash: str | None = None


@dataclass(frozen=True)
class FleetSnapshot:
    """One consistent reading of the registry; replaced whole on reload, never changed."""

    version: int
    loaded_at: float
    devices: dict[str, DeviceEntry] = field(default_factory=dict)
    label_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: RuleBook = field(default_factory=lambda: RuleBook([]))


def load_snapshot(conn, version: int) -> FleetSnapshot:
    devices = {
        r.id: DeviceEntry(active=r.deactivated_at is None, room_id=r.room_id, site_id=r.site_id,
                          credentials_hash=r.credentials_hash)
        for r in conn.execute(text(
            "SELECT d.id, d.deactivated_at, d.room_id, d.credentials_hash, b.site_id FROM devices d "
            "LEFT JOIN rooms r ON r.id = d.room_id LEFT JOIN buildings b ON b.id = r.building_id"))
    }
    label_sets = {r.site_id: tuple(r.labels) for r in conn.execute(text("SELECT site_id, labels FROM label_sets"))}
    rules = RuleBook([dict(r._mapping) for r in conn.execute(text(
        "SELECT kind, scope, scope_id, params, enabled FROM alert_rules"))])
    return FleetSnapshot(version, time.time(), devices, label_sets, rules)


def publish_change(producer, settings, entity: str) -> None:
    """Tell every registry reader that `entity` changed (best effort: readers also reload on a timer)."""
    notice = {"type": NOTICE_TYPE, "entity": entity, "at": time.time()}
    producer.send_raw(settings.kafka.control_topic, None, json.dumps(notice).encode(), [])
    producer.flush(timeout_s=5.0)


_DB_PRINCIPAL = {"ingest": "reader"}  # Kafka principal -> PostgreSQL principal where they differ


class FleetRegistry:
    """Admission, rooms, label sets and rules from the registry tables, cached and hot-reloaded."""

    def __init__(self, settings, engine=None, *, listen: bool = True, serialized=None, principal: str = "api"):
        import contextlib

        from storage.lane import engine_from_settings

        self.settings = settings
        self._own_engine = engine is None
        # reading the registry: the process's own database role (the gate's is the reader)
        self.engine = engine or engine_from_settings(settings, principal=_DB_PRINCIPAL.get(principal, principal))
        self.listen = listen
        self.principal = principal  # the Kafka user that follows the control topic: the process's own
        self._serialized = serialized or contextlib.nullcontext  # PGlite: one connection at a time (admin.deps)
        self.refresh_s = settings.api.registry_refresh_s
        self._snapshot = FleetSnapshot(version=0, loaded_at=0.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reloads = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FleetRegistry:
        """Load once (raising if the database cannot be read), then follow changes in a thread."""
        consumer = self._control_consumer() if self.listen else None
        self.reload()
        self._thread = threading.Thread(target=self._follow, args=(consumer,), name="fleet-registry", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._own_engine:
            self.engine.dispose()

    def __enter__(self) -> FleetRegistry:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def reload(self) -> FleetSnapshot:
        with self._serialized(), self.engine.connect() as conn:
            self._reloads += 1
            self._snapshot = load_snapshot(conn, self._reloads)
        return self._snapshot

    def current(self) -> FleetSnapshot:
        return self._snapshot

    def _control_consumer(self):
        from kafka import KafkaConsumer, TopicPartition

        from deploy.topics import ensure_topics

        from iotlm.credentials import kafka_client_kwargs

        ensure_topics(self.settings, principal=self.principal)
        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                 **kafka_client_kwargs(self.settings, self.principal), group_id=None,
                                 enable_auto_commit=False, client_id="iotlm-fleet-registry")
        tp = TopicPartition(self.settings.kafka.control_topic, 0)
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        consumer.position(tp)  # resolve "end" now: a notice sent after the first load is not missed
        return consumer

    def _follow(self, consumer) -> None:
        try:
            while not self._stop.is_set():
                changed = False
                if consumer is not None:
                    for batch in consumer.poll(timeout_ms=500).values():
                        changed |= any(_is_notice(r.value) for r in batch)
                else:
                    self._stop.wait(0.5)
                if changed or time.time() - self._snapshot.loaded_at >= self.refresh_s:
                    try:
                        self.reload()
                    except Exception as exc:  # keep serving what was last read; try again next round
                        log.warning("fleet registry reload failed (%s); keeping version %d", exc,
                                    self._snapshot.version)
        finally:
            if consumer is not None:
                consumer.close()

    # -- what the gate and the workers ask ------------------------------------------------------

    def refusal(self, device_id: str) -> str | None:
        """None when the device may send, else why not (the gate's and the workers' `unknown_device`)."""
        entry = self._snapshot.devices.get(device_id)
        if entry is None:
            return f"unknown device {device_id!r}: not in the registry; register it (POST /v1/devices) to let its frames in"
        if not entry.active:
            return f"device {device_id!r} is deactivated in the registry; reactivate it (PATCH /v1/devices) to let its frames in"
        return None

    def verifies(self, device_id: str, secret: str) -> bool:
        """Whether `secret` is the active device's current ingest secret (for per-device identity at the edge)."""
        from admin.security import matches

        entry = self._snapshot.devices.get(device_id)
        return bool(entry and entry.active and entry.credentials_hash and matches(secret, entry.credentials_hash))

    def room_of(self, device_id: str) -> str | None:
        entry = self._snapshot.devices.get(device_id)
        return entry.room_id if entry else None

    def get(self, device_id: str, default=None) -> str | None:
        """device id -> room, the way a `{device: room}` mapping answers (what the sink reads)."""
        return self.room_of(device_id) or default

    def labels_for(self, device_id: str) -> tuple[str, ...] | None:
        """The label set of the device's site; None: the default (`settings.workers.labels`)."""
        snapshot = self._snapshot
        entry = snapshot.devices.get(device_id)
        return snapshot.label_sets.get(entry.site_id) if entry and entry.site_id else None

    def rule_overrides(self, kind: str, device_id: str) -> dict | None:
        """`WorkerSettings` fields rule `kind` uses for this device ({} = the settings), None when disabled."""
        snapshot = self._snapshot
        entry = snapshot.devices.get(device_id)
        return snapshot.rules.overrides(kind, device_id, entry.room_id if entry else None,
                                        entry.site_id if entry else None)


def _is_notice(value: bytes) -> bool:
    try:
        return json.loads(value).get("type") == NOTICE_TYPE
    except (ValueError, AttributeError):
        return False
