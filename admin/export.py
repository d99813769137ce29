"""Lists as JSON or, with `?format=csv`, streamed CSV: one place decides how every list route answers."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Query
from fastapi.responses import StreamingResponse

Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv (streamed, header row first).")]
CSV_RESPONSE = {200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                      "description": "The rows; as CSV with ?format=csv."}}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    if isinstance(value, Decimal):
        return str(float(value))
    return str(value)


def csv_stream(rows: Iterable[dict], columns: Sequence[str], filename: str) -> StreamingResponse:
    def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
            if buffer.tell() > 65_536:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(lines(), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'})


def listing(rows: list[dict], fmt: str, model, filename: str):
    """`rows` as the response: validated models for JSON, or CSV with the model's fields as columns."""
    if fmt == "csv":
        return csv_stream(rows, list(model.model_fields), filename)
    return [model.model_validate(r) for r in rows]
