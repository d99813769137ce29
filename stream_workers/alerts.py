"""Alert rules over windows (raw signal) and results (activities), deduplicated per device and rule.

Rules and their severities:
- fall (critical): a free-fall stretch (|a| under `fall_freefall_g` for 0.1 s or more) followed
  within a second by an impact (|a| over `fall_impact_g`).
- sensor_fault (warning): an axis flat to within `flat_line_std` over a window (real sensors are
  never that still: the chip is stuck), or `saturation_fraction` of samples clipped at `saturation_ms2`.
- no_movement (warning): acceleration magnitude steadier than `no_movement_std` for `no_movement_s`.
- room_hours (warning): an activity in a room outside the hours allowed for it (`room_hours`, UTC).
- device_silent (warning): no frame from a device for `silent_device_s` of wall-clock time.
Room rules, on the room states of room devices (stream_workers.rooms; parameters per room through the
admin's alert rules with scope "room"):
- room_occupied_hours (warning): occupied outside [`room_open_hour`, `room_close_hour`) UTC (default 0-24: never).
- room_over_capacity (warning): more people than `room_capacity` (the model's count or the wearables'; 0: off).
- room_co2 (warning): CO2 above `room_co2_max_ppm` for `room_co2_for_s`.
- room_temperature (warning): temperature outside [`room_temperature_min_c`, `room_temperature_max_c`]
  for `room_temperature_for_s`.
- room_sensor_stuck (warning): CO2, temperature or humidity reading exactly one value for `room_stuck_s`.

An alert's `at` is when its condition started, in the device's own time (a window start, the end of
its last frame), never a clock read while handling it: the same condition seen again (overlapping
windows, frames re-read after a restart) has the same `dedup_key`; within `alert_cooldown_s` a repeat
of the same rule for the same device is not raised at all.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from iotlm.settings import WorkerSettings
from models.events import free_fall_impact
from stream_workers.fleet import Fleet
from stream_workers.records import Alert, WindowResult
from stream_workers.windows import Window

STUCK_CHANNELS = ("co2", "temperature", "humidity")



class AlertRules:
    """Evaluates every rule; keeps the little per-device state the rules need."""

    def __init__(self, config: WorkerSettings, fleet: Fleet | None = None):
        self.config = config
        self.fleet = fleet  # rules as data, hot-reloaded (stream_workers.fleet); None: settings only
        self._last_raised: dict[tuple[str, str], float] = {}  # (device, rule) -> alert time
        self._still_since: dict[str, float] = {}
        self._last_heard: dict[str, tuple[float, float]] = {}  # device -> (wall clock heard, end of its last frame)
        self._silent: set[str] = set()
        self._band_since: dict[tuple[str, str], float] = {}  # (device, room rule) -> window end it went out of band

    def export(self, device_id: str) -> dict:
        """The device's rule state (cooldowns, stillness, silence), as JSON-able data: what a worker
        taking over the device after a restart or a rebalance needs to raise nothing twice."""
        return {
            "last_raised": {rule: at for (device, rule), at in self._last_raised.items() if device == device_id},
            "still_since": self._still_since.get(device_id),
            "silent": device_id in self._silent,
            "last_heard": self._last_heard.get(device_id),  # (wall clock, end of the last frame)
            "band_since": {rule: at for (device, rule), at in self._band_since.items() if device == device_id},
        }

    def restore(self, device_id: str, state: dict) -> None:
        for rule, at in state.get("last_raised", {}).items():
            key = (device_id, rule)
            self._last_raised[key] = max(at, self._last_raised.get(key, at))
        if state.get("still_since") is not None:
            self._still_since.setdefault(device_id, state["still_since"])
        for rule, at in state.get("band_since", {}).items():
            self._band_since.setdefault((device_id, rule), at)
        if device_id not in self._last_heard:  # no frame of its own yet: the earlier owner's silence timer
            if state.get("last_heard"):
                self._last_heard[device_id] = tuple(state["last_heard"])
            if state.get("silent"):
                self._silent.add(device_id)

    def devices(self) -> set[str]:
        """Devices this worker keeps rule state for."""
        return {d for d, _ in self._last_raised} | set(self._still_since) | set(self._last_heard) | self._silent

    def forget(self, device_id: str) -> None:
        """The device moved to another worker, which restores its state from the table: time nothing here."""
        for key in [k for k in self._last_raised if k[0] == device_id]:
            del self._last_raised[key]
        self._still_since.pop(device_id, None)
        for key in [k for k in self._band_since if k[0] == device_id]:
            del self._band_since[key]
        self._last_heard.pop(device_id, None)
        self._silent.discard(device_id)

    def room_of(self, device_id: str) -> str | None:
        return self.fleet.room_of(device_id) if self.fleet else self.config.device_rooms.get(device_id)

    def _config(self, rule: str, device_id: str) -> WorkerSettings | None:
        """The settings `rule` reads for this device: the fleet's rule overrides if any; None when disabled."""
        if self.fleet is None:
            return self.config
        overrides = self.fleet.rule_overrides(rule, device_id)
        if overrides is None:
            return None
        return self.config.model_copy(update=overrides) if overrides else self.config

    def on_window(self, window: Window) -> list[Alert]:
        alerts = [self._fall(window), self._sensor_fault(window), self._no_movement(window)]
        return self._dedup([a for a in alerts if a is not None])

    def on_result(self, result: WindowResult) -> list[Alert]:
        room = self.room_of(result.device_id)
        config = self._config("room_hours", result.device_id)
        if room is None or config is None:
            return []
        hour = datetime.fromtimestamp(result.window_start, timezone.utc).hour
        for rule in config.room_hours:
            if rule.get("room") != room or rule.get("activity") != result.activity:
                continue
            start, end = int(rule["start_hour"]), int(rule["end_hour"])
            allowed = start <= hour < end if start <= end else (hour >= start or hour < end)
            if not allowed:
                return self._dedup([Alert(
                    rule="room_hours", severity="warning", device_id=result.device_id, at=result.window_start,
                    room=room, message=f"{result.activity} in {room} at {hour:02d}h UTC, allowed {start:02d}-{end:02d}h",
                    details={"activity": result.activity, "probability": result.probability},
                )])
        return []

    def on_room_state(self, state) -> list[Alert]:
        """The room rules on one room state (stream_workers.rooms.RoomStateResult)."""
        alerts = []
        device, room, at = state.device_id, state.room_id, state.window_end
        hour = datetime.fromtimestamp(state.window_end, timezone.utc).hour
        people = max(state.occupancy_count, state.people)
        config = self._config("room_occupied_hours", device)
        if config is not None and state.occupied:
            start, end = config.room_open_hour, config.room_close_hour
            allowed = start <= hour < end if start <= end else (hour >= start or hour < end)
            if not allowed:
                alerts.append(Alert("room_occupied_hours", "warning", device, at,
                                    f"{room or device} occupied ({state.occupancy}) at {hour:02d}h UTC, "
                                    f"open {start:02d}-{end:02d}h", room,
                                    {"occupancy": state.occupancy, "people": state.people}))
        config = self._config("room_over_capacity", device)
        if config is not None and config.room_capacity > 0 and people > config.room_capacity:
            alerts.append(Alert("room_over_capacity", "warning", device, at,
                                f"{room or device}: about {people:.0f} people, capacity {config.room_capacity}", room,
                                {"occupancy_count": state.occupancy_count, "people": state.people}))
        co2, temperature = state.readings.get("co2"), state.readings.get("temperature")
        alerts += self._out_of_band("room_co2", state, co2 is not None and co2 > self._cfg("room_co2", device,
                                    "room_co2_max_ppm"), "room_co2_for_s", f"CO2 {co2} ppm")
        config = self._config("room_temperature", device)
        out = temperature is not None and config is not None and not (
            config.room_temperature_min_c <= temperature <= config.room_temperature_max_c)
        alerts += self._out_of_band("room_temperature", state, out, "room_temperature_for_s",
                                    f"temperature {temperature} C")
        config = self._config("room_sensor_stuck", device)
        if config is not None:
            for channel in STUCK_CHANNELS:
                if state.stuck.get(channel, 0.0) >= config.room_stuck_s:
                    alerts.append(Alert("room_sensor_stuck", "warning", device, round(at - state.stuck[channel], 2),
                                        f"{channel} of {device} has read {state.readings.get(channel)} for "
                                        f"{state.stuck[channel]:.0f} s", room, {"channel": channel}))
                    break
        return self._dedup(alerts)

    def _cfg(self, rule: str, device_id: str, name: str):
        config = self._config(rule, device_id)
        return getattr(config, name) if config is not None else math.inf

    def _out_of_band(self, rule: str, state, out: bool, duration_field: str, what: str) -> list[Alert]:
        """One alert once the condition has held `duration_field` seconds, dated by when it began."""
        key = (state.device_id, rule)
        config = self._config(rule, state.device_id)
        if config is None or not out:
            self._band_since.pop(key, None)
            return []
        since = self._band_since.setdefault(key, state.window_end)
        lasted = state.window_end - since
        if lasted < getattr(config, duration_field):
            return []
        return [Alert(rule, "warning", state.device_id, since,
                      f"{state.room_id or state.device_id}: {what} for {lasted / 60:.0f} min", state.room_id,
                      {"minutes": round(lasted / 60, 1)})]

    def heard(self, device_id: str, now: float, frame_end: float | None = None) -> None:
        """A frame arrived from the device: `now` by the wall clock, ending at `frame_end` by the device's."""
        self._last_heard[device_id] = (now, now if frame_end is None else frame_end)
        self._silent.discard(device_id)

    def on_tick(self, now: float) -> list[Alert]:
        """Devices that went silent; each silence raises once, dated by the end of the device's last frame
        (event data: the same silence found again after a restart has the same dedup key)."""
        alerts = []
        for device_id, (heard_at, frame_end) in self._last_heard.items():
            config = self._config("device_silent", device_id)
            if config is None:
                continue
            if device_id not in self._silent and now - heard_at >= config.silent_device_s:
                self._silent.add(device_id)
                alerts.append(Alert(
                    rule="device_silent", severity="warning", device_id=device_id, at=round(frame_end, 2),
                    room=self.room_of(device_id),
                    message=f"{device_id} sent nothing for {now - heard_at:.0f} s "
                            f"(limit {config.silent_device_s:g} s)",
                ))
        return alerts

    # -- rules on the raw window -------------------------------------------------------------

    def _fall(self, window: Window) -> Alert | None:
        config = self._config("fall", window.device_id)
        if config is None:
            return None
        found = free_fall_impact(window.acc, window.rate_hz, config.fall_freefall_g, config.fall_impact_g)
        if found is None:
            return None
        start, impact_g = found
        return Alert(
            rule="fall", severity="critical", device_id=window.device_id,
            at=round(window.start + start / window.rate_hz, 2), room=self.room_of(window.device_id),
            message=f"fall: free fall then an impact of {impact_g:.1f} g", details={"impact_g": impact_g},
        )

    def _sensor_fault(self, window: Window) -> Alert | None:
        config = self._config("sensor_fault", window.device_id)
        if config is None:
            return None
        std = window.acc.std(axis=0)
        clipped = (np.abs(window.acc) >= config.saturation_ms2).any(axis=1).mean()
        if (std < config.flat_line_std).any():
            axis = "xyz"[int(np.argmin(std))]
            problem = f"accelerometer axis {axis} is a flat line (std {std.min():.1e} m/s^2)"
        elif clipped >= config.saturation_fraction:
            problem = f"{clipped:.0%} of samples clipped at {config.saturation_ms2:g} m/s^2"
        else:
            return None
        return Alert(
            rule="sensor_fault", severity="warning", device_id=window.device_id, at=window.start,
            room=self.room_of(window.device_id), message=f"sensor fault: {problem}",
        )

    def _no_movement(self, window: Window) -> Alert | None:
        config = self._config("no_movement", window.device_id)
        if config is None:
            return None
        steady = np.linalg.norm(window.acc, axis=1).std() < config.no_movement_std
        if not steady:
            self._still_since.pop(window.device_id, None)
            return None
        since = self._still_since.setdefault(window.device_id, window.start)
        still_for = window.end - since
        if still_for < config.no_movement_s:
            return None
        return Alert(
            rule="no_movement", severity="warning", device_id=window.device_id, at=since,
            room=self.room_of(window.device_id), message=f"no movement for {still_for:.0f} s",
        )

    def _dedup(self, alerts: list[Alert]) -> list[Alert]:
        fresh = []
        for alert in alerts:
            key = (alert.device_id, alert.rule)
            last = self._last_raised.get(key)
            cooldown_s = (self._config(alert.rule, alert.device_id) or self.config).alert_cooldown_s
            if last is not None and abs(alert.at - last) < cooldown_s:
                continue
            self._last_raised[key] = alert.at
            fresh.append(alert)
        return fresh
