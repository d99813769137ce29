"""GET /health, without a key: can the API reach the database, Redis and Kafka? 503 when one is down."""

from __future__ import annotations

import socket

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from admin.models import Health

router = APIRouter(tags=["health"])


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "A service is down."}})
def health(request: Request):
    state = request.app.state
    settings = state.settings

    def database():
        with state.store.connect() as conn:
            conn.execute(text("SELECT 1"))

    def kafka():
        with socket.create_connection((settings.stack.host_of("kafka"), settings.stack.kafka_port), timeout=2):
            pass

    report = Health(status="ok", database=_check(database), redis=_check(state.live_state.redis.ping),
                    kafka=_check(kafka))
    if "ok" != report.database or "ok" != report.redis or "ok" != report.kafka:
        report.status = "degraded"
        return JSONResponse(report.model_dump(), status_code=503)
    return report
