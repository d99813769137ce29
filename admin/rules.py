"""Alert rules as data: the parameters each built-in rule takes, checked before anything is stored, and
how rules for the fleet, a site, a room and a device combine into what the workers apply.

Parameter names are the `WorkerSettings` fields the rules in `stream_workers/alerts.py` read, so a
rule's parameters are overrides of those settings: nothing to translate, one name for one thing.
The most specific rule wins: device over room over site over fleet, parameter by parameter, and
the most specific rule's `enabled` decides whether the rule runs at all.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

RULE_KINDS = ("fall", "sensor_fault", "no_movement", "room_hours", "device_silent", "room_occupied_hours",
              "room_over_capacity", "room_co2", "room_temperature", "room_sensor_stuck")
RULE_SCOPES = ("fleet", "site", "room", "device")
ActivityName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    alert_cooldown_s: float | None = Field(None, ge=0, le=86_400, description="A repeat within this is not raised.")


class FallParams(_Params):
    fall_freefall_g: float | None = Field(None, gt=0, lt=1, description="|a| below this (g) is free fall.")
    fall_impact_g: float | None = Field(None, gt=1, le=16, description="|a| above this (g) after free fall is an impact.")


class SensorFaultParams(_Params):
    flat_line_std: float | None = Field(None, gt=0, le=1, description="m/s^2: an axis stiller than this is stuck.")
    saturation_ms2: float | None = Field(None, gt=0, le=2000, description="|acc| at or above this is clipped.")
    saturation_fraction: float | None = Field(None, gt=0, le=1, description="Share of clipped samples that is a fault.")


class NoMovementParams(_Params):
    no_movement_s: float | None = Field(None, gt=0, le=7 * 86_400)
    no_movement_std: float | None = Field(None, gt=0, le=10)


class AllowedHours(BaseModel):
    """An activity is allowed from start_hour (inclusive) to end_hour (exclusive), UTC; wraps past midnight."""

    model_config = ConfigDict(extra="forbid")
    activity: ActivityName
    start_hour: int = Field(ge=0, le=23)
    end_hour: int = Field(ge=0, le=24)

    @model_validator(mode="after")
    def _not_empty(self):
        if self.start_hour == self.end_hour % 24:
            raise ValueError("start_hour equals end_hour: the activity would never be allowed; delete the entry instead")
        return self


class RoomHoursParams(_Params):
    room_hours: list[AllowedHours] | None = Field(None, max_length=100)


class DeviceSilentParams(_Params):
    silent_device_s: float | None = Field(None, gt=0, le=7 * 86_400)


class RoomOccupiedHoursParams(_Params):
    room_open_hour: int | None = Field(None, ge=0, le=23, description="UTC hour the room opens.")
    room_close_hour: int | None = Field(None, ge=0, le=24, description="UTC hour it closes; occupied outside: alert.")


class RoomOverCapacityParams(_Params):
    room_capacity: int | None = Field(None, ge=0, le=100_000, description="0: no capacity, the rule is off.")


class RoomCo2Params(_Params):
    room_co2_max_ppm: float | None = Field(None, gt=0, le=100_000)
    room_co2_for_s: float | None = Field(None, ge=0, le=7 * 86_400)


class RoomTemperatureParams(_Params):
    room_temperature_min_c: float | None = Field(None, ge=-60, le=120)
    room_temperature_max_c: float | None = Field(None, ge=-60, le=120)
    room_temperature_for_s: float | None = Field(None, ge=0, le=7 * 86_400)


class RoomSensorStuckParams(_Params):
    room_stuck_s: float | None = Field(None, gt=0, le=30 * 86_400)


PARAMS: dict[str, type[_Params]] = {
    "fall": FallParams, "sensor_fault": SensorFaultParams, "no_movement": NoMovementParams,
    "room_hours": RoomHoursParams, "device_silent": DeviceSilentParams,
    "room_occupied_hours": RoomOccupiedHoursParams, "room_over_capacity": RoomOverCapacityParams,
    "room_co2": RoomCo2Params, "room_temperature": RoomTemperatureParams, "room_sensor_stuck": RoomSensorStuckParams,
}


def checked_params(kind: str, params: dict) -> dict:
    """The parameters as stored (unset ones left out); raises pydantic's ValidationError with the reasons."""
    return PARAMS[kind].model_validate(params).model_dump(exclude_none=True)


class RuleBook:
    """The rules in force, read by `FleetRegistry`; `overrides` answers for one device and rule kind."""

    def __init__(self, rows: list[dict]):
        self._rules = {(r["kind"], r["scope"], r["scope_id"]): r for r in rows}

    def __len__(self) -> int:
        return len(self._rules)

    def overrides(self, kind: str, device_id: str, room_id: str | None, site_id: str | None) -> dict | None:
        """WorkerSettings fields to override for this device and rule, or None when the rule is disabled."""
        update, enabled = {}, True
        for scope, scope_id in (("fleet", ""), ("site", site_id), ("room", room_id), ("device", device_id)):
            rule = self._rules.get((kind, scope, scope_id)) if scope_id is not None else None
            if rule is not None:
                update |= rule["params"]
                enabled = rule["enabled"]
        if not enabled:
            return None
        if "room_hours" in update:  # entries of a rule apply to the room the device is in
            update["room_hours"] = [{"room": room_id, **entry} for entry in update["room_hours"]] if room_id else []
        return update
