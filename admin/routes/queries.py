"""What the platform knows: latest state (Redis), device and room history, episodes, activity minutes per
hour (the hourly aggregates) and alerts (storage). Times default to the last 24 hours."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from admin.deps import ReadKey, Store
from admin.export import CSV_RESPONSE, Format, listing
from admin.models import (ActivityMinutesRow, ActivityName, AlertRow, DeviceState, EpisodeRow, HistoryRow, Name, RoomState,
                          Time)
from admin.routes import CONFLICT, NOT_FOUND, PROBLEMS
from admin.routes.params import IdFilter, PathId

router = APIRouter(prefix="/v1", tags=["queries"], responses=PROBLEMS)
Start = Annotated[Time | None, Query(description="Inclusive; default: 24 hours before end.")]
End = Annotated[Time | None, Query(description="Exclusive; default: now.")]
BucketS = Annotated[int, Query(ge=1, le=86_400, description="Bucket width in seconds.")]
ModelVersion = Annotated[Name | None, Query()]
MAX_SPAN = timedelta(days=400)


def _span(start: datetime | None, end: datetime | None, bucket_s: int | None = None,
          max_buckets: int = 10_000) -> tuple[datetime, datetime]:
    end = end or datetime.now(timezone.utc)
    start = start or end - timedelta(days=1)
    if end <= start:
        raise HTTPException(422, "end must be after start")
    if end - start > MAX_SPAN:
        raise HTTPException(422, f"at most {MAX_SPAN.days} days per request")
    if bucket_s is not None and (end - start).total_seconds() / bucket_s > max_buckets:
        raise HTTPException(422, f"more than {max_buckets} buckets: widen bucket_s or narrow the time range")
    return start, end


def _queries(request: Request):
    return request.app.state.queries()


@router.get("/state/devices/{device_id}", response_model=DeviceState, responses=NOT_FOUND)
def device_state(device_id: PathId, request: Request, _: ReadKey):
    state = request.app.state.live_state.device(device_id)
    if state is None:
        raise HTTPException(404, f"no live state for {device_id!r}: nothing classified within the state TTL")
    return DeviceState(device_id=device_id, **vars(state))


@router.get("/state/rooms/{room_id}", response_model=RoomState)
def room_state(room_id: PathId, request: Request, _: ReadKey):
    """The room's latest activity (from the device heard last) and who is there; empty when nobody is."""
    live = request.app.state.live_state
    state = live.room(room_id)
    fields = vars(state) if state else {k: None for k in ("activity", "since", "confidence", "model_version",
                                                          "updated_at")}
    fields.pop("room_id", None)
    return RoomState(room_id=room_id, present_devices=live.present_devices(room_id), **fields)


@router.get("/history/devices/{device_id}", response_model=list[HistoryRow], responses=CSV_RESPONSE)
def device_history(device_id: PathId, request: Request, store: Store, _: ReadKey, start: Start = None, end: End = None,
                   bucket_s: BucketS = 300, model_version: ModelVersion = None, format: Format = "json"):
    """Per bucket and activity: windows seen and their mean top probability."""
    start, end = _span(start, end, bucket_s)
    with store.serialized():
        rows = _queries(request).device_history(device_id, start, end, f"{bucket_s} seconds", model_version)
    return listing(rows, format, HistoryRow, f"history_{device_id}")


@router.get("/history/rooms/{room_id}", response_model=list[HistoryRow], responses=CSV_RESPONSE)
def room_history(room_id: PathId, request: Request, store: Store, _: ReadKey, start: Start = None, end: End = None,
                 bucket_s: BucketS = 300, model_version: ModelVersion = None, format: Format = "json"):
    start, end = _span(start, end, bucket_s)
    with store.serialized():
        rows = _queries(request).room_history(room_id, start, end, f"{bucket_s} seconds", model_version)
    return listing(rows, format, HistoryRow, f"history_{room_id}")


@router.get("/episodes", response_model=list[EpisodeRow], responses=CSV_RESPONSE)
def episodes(request: Request, store: Store, _: ReadKey, start: Start = None, end: End = None,
             device_id: IdFilter = None, room_id: IdFilter = None, label: Annotated[ActivityName | None, Query()] = None,
             format: Format = "json"):
    start, end = _span(start, end)
    with store.serialized():
        rows = _queries(request).episodes(start, end, device_id, room_id, label)
    return listing(rows[: request.app.state.settings.api.max_rows], format, EpisodeRow, "episodes")


@router.get("/activity-minutes", response_model=list[ActivityMinutesRow], responses=CSV_RESPONSE | CONFLICT)
def activity_minutes(request: Request, store: Store, _: ReadKey, room_id: Annotated[PathId, Query()],
                     start: Start = None, end: End = None, model_version: ModelVersion = None, format: Format = "json"):
    """Minutes of each activity per hour in a room, from the hourly aggregate (refreshed by `iotlm db maintain`
    on the PostgreSQL lane, continuously on TimescaleDB)."""
    start, end = _span(start, end)
    hop_s = request.app.state.settings.workers.hop_s
    with store.serialized():
        rows = _queries(request).activity_minutes(room_id, start, end, hop_s, model_version)
    return listing(rows, format, ActivityMinutesRow, f"activity_{room_id}")


@router.get("/alerts", response_model=list[AlertRow], responses=CSV_RESPONSE)
def alerts(request: Request, store: Store, _: ReadKey, start: Start = None, end: End = None, device_id: IdFilter = None,
           room_id: IdFilter = None,
           kind: Annotated[Literal["fall", "sensor_fault", "no_movement", "room_hours", "device_silent"] | None,
                           Query()] = None,
           open_only: bool = False, format: Format = "json"):
    """The workers' alerts as stored, newest first (alarms are what operators handle: /v1/alarms)."""
    start, end = _span(start, end)
    with store.serialized():
        rows = _queries(request).alerts(start, end, device_id, room_id, kind, open_only)
    return listing(rows[: request.app.state.settings.api.max_rows], format, AlertRow, "alerts")
