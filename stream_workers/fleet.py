"""What a worker may be told about the fleet by the composition root (admin.registry.FleetRegistry does
it from the registry tables): without one, admission, rooms, labels and rules come from settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Fleet(Protocol):
    def refusal(self, device_id: str) -> str | None:
        """None when the device may send, else why not (dead-lettered as ``unknown_device``)."""

    def room_of(self, device_id: str) -> str | None: ...

    def get(self, device_id: str, default=None) -> str | None:
        """device id -> room, like the ``settings.workers.device_rooms`` mapping it replaces."""

    def labels_for(self, device_id: str) -> Sequence[str] | None:
        """The activity names to classify this device's windows against; None: ``settings.workers.labels``."""

    def rule_overrides(self, kind: str, device_id: str) -> dict | None:
        """``WorkerSettings`` fields alert rule ``kind`` uses for the device ({}: the settings); None: disabled."""
