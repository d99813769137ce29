"""Labels: what a person (or an import) says a device's wearer did from `starts_at` to `ends_at`.

One at a time, a JSON batch, or a CSV file; a batch is stored whole or not at all, and every refusal
names the item and the reason. Labels of one device never overlap, and the activity must be in the
label set of the device's site (the default set for a device without one).
"""

from __future__ import annotations

import csv
import io
from typing import Annotated

from fastapi import HTTPException, Query, Request
from pydantic import ValidationError
from sqlalchemy import Connection, text
from starlette.concurrency import run_in_threadpool

from admin import audit, crud
from admin.deps import LabelKey, ReadKey, Store
from admin.export import CSV_RESPONSE, Format, listing
from admin.models import Created, Label, LabelIn, LabelsIn, Time
from admin.routes import CONFLICT, NOT_FOUND, resource_router
from admin.routes.params import BigRowId, IdFilter, LimitQ, OffsetQ

router = resource_router("labels", "labels")
COLUMNS = "id, device_id, starts_at, ends_at, label, labeled_by, labeled_at, source"
CSV_COLUMNS = ("device_id", "starts_at", "ends_at", "label")  # required; labeled_by and source are optional
MAX_CSV_BYTES = 16 * 1024 * 1024


class Refused(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _allowed_labels(conn: Connection, device_id: str, default: list[str]) -> list[str]:
    row = conn.execute(text(
        "SELECT d.id, s.labels FROM devices d LEFT JOIN rooms r ON r.id = d.room_id "
        "LEFT JOIN buildings b ON b.id = r.building_id LEFT JOIN label_sets s ON s.site_id = b.site_id "
        "WHERE d.id = :d"), {"d": device_id}).first()
    if row is None:
        raise Refused(f"no device {device_id!r} in the registry")
    return list(row.labels) if row.labels else default


def _store_labels(conn: Connection, labels: list[LabelIn], labeled_by: str, key_id: int, default: list[str],
                  lines: list[int] | None = None) -> list[dict]:
    """Insert all, in one transaction; raises HTTPException(422) listing every refused item (by its index,
    or its CSV `line`)."""
    problems, rows = [], []
    for device_id in sorted({x.device_id for x in labels}):  # serialize writers per device for the overlap check
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('iotlm-labels:' || :d))"), {"d": device_id})
    for index, item in enumerate(labels):
        try:
            if item.ends_at <= item.starts_at:
                raise Refused("ends_at must be after starts_at")
            allowed = _allowed_labels(conn, item.device_id, default)
            if item.label not in allowed:
                raise Refused(f"{item.label!r} is not in the label set of {item.device_id}'s site: {', '.join(allowed)}")
            clash = conn.execute(text(
                f"SELECT {COLUMNS} FROM labels WHERE device_id = :d AND starts_at < :end AND ends_at > :start "
                "ORDER BY starts_at LIMIT 1"), {"d": item.device_id, "start": item.starts_at, "end": item.ends_at}).first()
            if clash is not None:
                raise Refused(f"overlaps label {clash.id} ({clash.label}, {clash.starts_at.isoformat()} to "
                              f"{clash.ends_at.isoformat()}) of {item.device_id}; labels of one device may not overlap")
            row = conn.execute(text(
                "INSERT INTO labels (device_id, starts_at, ends_at, label, labeled_by, source) "
                f"VALUES (:device_id, :starts_at, :ends_at, :label, :labeled_by, :source) RETURNING {COLUMNS}"),
                item.model_dump() | {"labeled_by": item.labeled_by or labeled_by}).one()
            rows.append(dict(row._mapping))
            audit.record(conn, key_id, "create", "label", row.id, None, rows[-1])
        except Refused as exc:
            where = {"line": lines[index]} if lines else {"index": index}
            problems.append(where | {"device_id": item.device_id, "reason": exc.reason})
    if problems:
        raise HTTPException(422, {"message": f"{len(problems)} of {len(labels)} labels refused; none stored",
                                  "refused": problems[:1000]})
    return rows


@router.get("", response_model=list[Label], responses=CSV_RESPONSE)
def list_labels(store: Store, _: ReadKey, device_id: IdFilter = None, start: Annotated[Time | None, Query()] = None,
                end: Annotated[Time | None, Query()] = None, format: Format = "json", limit: LimitQ = 1000,
                offset: OffsetQ = 0):
    """Labels of a device (or all), overlapping [start, end) when given, oldest first."""
    with store.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text(
            f"SELECT {COLUMNS} FROM labels WHERE (CAST(:d AS text) IS NULL OR device_id = :d) "
            "AND (CAST(:end AS timestamptz) IS NULL OR starts_at < :end) "
            "AND (CAST(:start AS timestamptz) IS NULL OR ends_at > :start) "
            "ORDER BY device_id, starts_at LIMIT :limit OFFSET :offset"),
            {"d": device_id, "start": start, "end": end, "limit": limit, "offset": offset})]
    return listing(rows, format, Label, "labels")


@router.post("", response_model=Label, status_code=201, responses=CONFLICT)
def create_label(body: LabelIn, store: Store, caller: LabelKey, request: Request):
    with store.begin() as conn:
        return _store_labels(conn, [body], caller.name, caller.key_id, request.app.state.settings.workers.labels)[0]


@router.post(":bulk", response_model=Created, status_code=201)
def create_labels(body: LabelsIn, store: Store, caller: LabelKey, request: Request):
    """Many labels at once: all stored, or none (the answer lists each refused one and why)."""
    with store.begin() as conn:
        rows = _store_labels(conn, body.labels, caller.name, caller.key_id, request.app.state.settings.workers.labels)
    return Created(created=len(rows), ids=[r["id"] for r in rows])


@router.post(":import", response_model=Created, status_code=201,
             openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}})
async def import_labels(request: Request, store: Store, caller: LabelKey):
    """A CSV file (header row: device_id,starts_at,ends_at,label[,labeled_by][,source]); all or nothing."""
    raw = await request.body()
    if len(raw) > MAX_CSV_BYTES:
        raise HTTPException(413, f"CSV larger than {MAX_CSV_BYTES} bytes: split it")
    items, lines = _parse_csv(raw)

    def store_all():
        with store.begin() as conn:
            return _store_labels(conn, items, caller.name, caller.key_id, request.app.state.settings.workers.labels,
                                 lines)

    rows = await run_in_threadpool(store_all)
    return Created(created=len(rows), ids=[r["id"] for r in rows])


def _parse_csv(raw: bytes) -> tuple[list[LabelIn], list[int]]:
    """The CSV's labels and the line each came from."""
    try:
        body = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, f"the CSV is not UTF-8 (byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(body, newline=""))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise HTTPException(422, f"the CSV header lacks {', '.join(missing)}; expected "
                                 "device_id,starts_at,ends_at,label[,labeled_by][,source]")
    items, lines, problems = [], [], []
    try:
        for record in reader:
            line = reader.line_num
            fields = {k: v for k, v in record.items() if k in (*CSV_COLUMNS, "labeled_by", "source") and v not in (None, "")}
            fields.setdefault("source", "import")
            try:
                items.append(LabelIn.model_validate(fields))
                lines.append(line)
            except ValidationError as exc:
                problems.append({"line": line, "reason": "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())})
    except csv.Error as exc:
        raise HTTPException(422, f"the CSV cannot be read: {exc}") from None
    if problems:
        raise HTTPException(422, {"message": f"{len(problems)} CSV lines refused; none stored", "refused": problems[:1000]})
    if not items:
        raise HTTPException(422, "the CSV has no label rows")
    return items, lines


@router.delete("/{label_id}", status_code=204, responses=NOT_FOUND)
def delete_label(label_id: BigRowId, store: Store, caller: LabelKey):
    with store.begin() as conn:
        crud.delete_row(conn, caller.key_id, "labels", "label", "id", label_id, "label")
