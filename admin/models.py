"""The API's request and response bodies (pydantic), and the small types they share.

Strings are bounded and free of control characters, times must carry a zone, numbers must be
finite: bad input is refused with a 422 naming the field, before any of it reaches the database.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from admin.rules import (
    ActivityName, DeviceSilentParams, FallParams, NoMovementParams, RoomCo2Params, RoomHoursParams,
    RoomOccupiedHoursParams, RoomOverCapacityParams, RoomSensorStuckParams, RoomTemperatureParams, SensorFaultParams,
)  # fmt: skip
from ingest.frame import PLACEMENTS

# The frame contract's device id pattern, used for every id a person picks (sites, rooms, devices).
Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Comment = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]
Kind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Placement = Literal[PLACEMENTS]


def _in_range(value: datetime) -> datetime:
    if not 1970 <= value.year <= 2200:
        raise ValueError("times must lie between the years 1970 and 2200")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("time out of range") from None


Time = Annotated[AwareDatetime, AfterValidator(_in_range)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Problem(BaseModel):
    """Every 4xx (and 503) answer: `detail` says what is wrong and, where it helps, how to fix it."""

    detail: Any


class Health(Out):
    status: Literal["ok", "degraded"]
    database: str
    redis: str
    kafka: str


# -- places ---------------------------------------------------------------------------------------

class SiteIn(Body):
    id: Ident
    name: Name


class SitePatch(Body):
    name: Name


class Site(Out):
    id: str
    name: str


class BuildingIn(Body):
    id: Ident
    site_id: Ident
    name: Name


class BuildingPatch(Body):
    site_id: Ident | None = None
    name: Name | None = None


class Building(Out):
    id: str
    site_id: str
    name: str


class RoomIn(Body):
    id: Ident
    building_id: Ident
    name: Name
    floor: int | None = Field(None, ge=-100, le=300)


class RoomPatch(Body):
    building_id: Ident | None = None
    name: Name | None = None
    floor: int | None = Field(None, ge=-100, le=300)


class Room(Out):
    id: str
    building_id: str
    name: str
    floor: int | None


# -- devices --------------------------------------------------------------------------------------

class DeviceIn(Body):
    id: Ident
    kind: Kind = "imu"
    placement: Placement = "unknown"
    room_id: Ident | None = None
    owner: Name | None = None


class DevicePatch(Body):
    kind: Kind | None = None
    placement: Placement | None = None
    room_id: Ident | None = None
    owner: Name | None = None
    active: bool | None = Field(None, description="false deactivates (its frames are refused), true reactivates.")


class Device(Out):
    id: str
    kind: str | None
    placement: str | None
    room_id: str | None
    owner: str | None
    active: bool
    registered_at: datetime
    deactivated_at: datetime | None
    credentials_issued_at: datetime | None


class DeviceCredentials(Out):
    device_id: str
    secret: str = Field(description="Shown this once; only its hash is stored. Issuing again replaces it.")
    issued_at: datetime


# -- labels ---------------------------------------------------------------------------------------

class LabelSetIn(Body):
    labels: list[ActivityName] = Field(min_length=2, max_length=64)


class LabelSet(Out):
    site_id: str
    labels: list[str]
    updated_at: datetime


class LabelIn(Body):
    device_id: Ident
    starts_at: Time
    ends_at: Time
    label: ActivityName
    labeled_by: Name | None = Field(None, description="Who says so; default: the key's name.")
    source: Literal["manual", "import", "llm", "rule"] = "manual"


class Label(Out):
    id: int
    device_id: str
    starts_at: datetime
    ends_at: datetime
    label: str
    labeled_by: str
    labeled_at: datetime
    source: str


class LabelsIn(Body):
    labels: list[LabelIn] = Field(min_length=1, max_length=10_000)


class Created(Out):
    created: int
    ids: list[int]


# -- alert rules ----------------------------------------------------------------------------------

class _RuleIn(Body):
    scope: Literal["fleet", "site", "room", "device"] = "fleet"
    scope_id: Ident | None = Field(None, description="The site, room or device; none for the fleet.")
    enabled: bool = True


class FallRule(_RuleIn):
    kind: Literal["fall"]
    params: FallParams = Field(default_factory=FallParams)


class SensorFaultRule(_RuleIn):
    kind: Literal["sensor_fault"]
    params: SensorFaultParams = Field(default_factory=SensorFaultParams)


class NoMovementRule(_RuleIn):
    kind: Literal["no_movement"]
    params: NoMovementParams = Field(default_factory=NoMovementParams)


class RoomHoursRule(_RuleIn):
    kind: Literal["room_hours"]
    params: RoomHoursParams = Field(default_factory=RoomHoursParams)


class DeviceSilentRule(_RuleIn):
    kind: Literal["device_silent"]
    params: DeviceSilentParams = Field(default_factory=DeviceSilentParams)


class RoomOccupiedHoursRule(_RuleIn):
    kind: Literal["room_occupied_hours"]
    params: RoomOccupiedHoursParams = Field(default_factory=RoomOccupiedHoursParams)


class RoomOverCapacityRule(_RuleIn):
    kind: Literal["room_over_capacity"]
    params: RoomOverCapacityParams = Field(default_factory=RoomOverCapacityParams)


class RoomCo2Rule(_RuleIn):
    kind: Literal["room_co2"]
    params: RoomCo2Params = Field(default_factory=RoomCo2Params)


class RoomTemperatureRule(_RuleIn):
    kind: Literal["room_temperature"]
    params: RoomTemperatureParams = Field(default_factory=RoomTemperatureParams)


class RoomSensorStuckRule(_RuleIn):
    kind: Literal["room_sensor_stuck"]
    params: RoomSensorStuckParams = Field(default_factory=RoomSensorStuckParams)


RuleIn = Annotated[FallRule | SensorFaultRule | NoMovementRule | RoomHoursRule | DeviceSilentRule
                   | RoomOccupiedHoursRule | RoomOverCapacityRule | RoomCo2Rule | RoomTemperatureRule
                   | RoomSensorStuckRule, Field(discriminator="kind")]


class RulePatch(Body):
    params: dict[str, Any] | None = Field(None, description="Replaces the parameters; checked against the rule's kind.")
    enabled: bool | None = None


class Rule(Out):
    id: int
    kind: str
    scope: str
    scope_id: str | None
    params: dict[str, Any]
    enabled: bool
    created_at: datetime
    updated_at: datetime


# -- alarms ---------------------------------------------------------------------------------------

class AlarmAction(Body):
    comment: Comment | None = None
    assignee: Name | None = None


class AlarmPatch(Body):
    comment: Comment | None = None
    assignee: Name | None = None


class Alarm(Out):
    id: int
    subject: str
    rule: str
    device_id: str | None
    room_id: str | None
    severity: str
    status: str
    message: str
    details: dict[str, Any]
    occurrences: int
    first_seen_at: datetime
    last_seen_at: datetime
    assignee: str | None
    comment: str | None
    acknowledged_at: datetime | None
    acknowledged_by: int | None
    cleared_at: datetime | None
    cleared_by: int | None


# -- keys, audit ----------------------------------------------------------------------------------

class KeyIn(Body):
    scope: Literal["read", "label", "admin"]
    name: Name = "api"
    expires_days: float | None = Field(None, gt=0, le=3650)


class Key(Out):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class NewKey(Key):
    key: str = Field(description="Shown this once; only its hash is stored.")


class AuditEntry(Out):
    id: int
    at: datetime
    key_id: int | None
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


# -- queries --------------------------------------------------------------------------------------

class DeviceState(Out):
    device_id: str
    activity: str
    since: datetime
    confidence: float
    model_version: str
    updated_at: datetime
    room_id: str | None


class RoomState(Out):
    room_id: str
    activity: str | None
    since: datetime | None
    confidence: float | None
    model_version: str | None
    updated_at: datetime | None
    present_devices: list[str]


class HistoryRow(Out):
    bucket: datetime
    label: str
    windows: int
    mean_probability: float


class EpisodeRow(Out):
    device_id: str
    room_id: str | None
    label: str
    started_at: datetime
    ended_at: datetime
    windows: int
    mean_probability: float
    model_version: str


class ActivityMinutesRow(Out):
    bucket: datetime
    label: str
    windows: int
    minutes: float


class AlertRow(Out):
    dedup_key: str
    kind: str
    severity: str
    device_id: str | None
    room_id: str | None
    started_at: datetime
    ended_at: datetime | None
    payload: dict[str, Any]


class ImportResult(Out):
    accepted: int
    topic: str
