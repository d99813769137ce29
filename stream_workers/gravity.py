"""Per-device gravity references in the worker: each device's "up", learned from its own stream.

Every window of a device updates that device's `models.gravity.GravityReference` (running sums over
its gait windows), and the window carries the current estimate to the classifier, which turns it to
the mounting the model was trained with (motion-v1: waist only) or takes it as an input (motion-v2).
A reference exists only once the device has walked (`MIN_GAIT_WINDOWS` gait windows): a device that
has only sat so far keeps its windows as sent; devices of unknown placement get none. The state is a few numbers per device;
it travels with the episodes and alert rules in the durable per-device table (Faust engine), so it
survives restarts and rebalances. Windows re-read after a crash may be counted twice: a running
mean over hundreds of windows barely moves.
"""

from __future__ import annotations

import numpy as np

from models.gravity import GravityReference


class DeviceGravity:
    def __init__(self) -> None:
        self._references: dict[str, GravityReference] = {}

    def observe(self, device_id: str, placement: str, acc: np.ndarray) -> tuple[float, float, float] | None:
        """Update the device's reference with one window (T, 3); its "up" when usable, else None."""
        if placement in ("unknown", "room"):  # "up" differs by placement; a room device has none
            return None
        reference = self._references.setdefault(device_id, GravityReference())
        reference.update(acc)
        up = reference.direction()
        return tuple(float(x) for x in up) if up is not None else None

    def export(self, device_id: str) -> dict | None:
        reference = self._references.get(device_id)
        return reference.to_dict() if reference is not None else None

    def restore(self, device_id: str, state: dict | None) -> None:
        if state:
            self._references[device_id] = GravityReference.from_dict(state)

    def forget(self, device_id: str) -> None:
        self._references.pop(device_id, None)
