"""Database refusals as clear 4xx answers (and an unreachable service as 503), never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from admin.alarms import AlarmTransitionError

log = logging.getLogger(__name__)


def _first_line(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    diag = getattr(orig, "diag", None)
    if diag is not None and diag.message_primary:
        return diag.message_primary + (f" ({diag.message_detail})" if diag.message_detail else "")
    return str(orig).splitlines()[0]


def install(app: FastAPI) -> None:
    @app.exception_handler(sa_exc.IntegrityError)
    async def integrity(_request: Request, exc: sa_exc.IntegrityError):
        sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if sqlstate == "23505":  # unique violation
            return JSONResponse({"detail": f"already exists: {_first_line(exc)}"}, status_code=409)
        if sqlstate == "23503":  # foreign key: a reference to something that is not there (or still referenced)
            return JSONResponse({"detail": f"refers to a missing record, or is still referred to: {_first_line(exc)}"},
                                status_code=409)
        return JSONResponse({"detail": f"refused by the database: {_first_line(exc)}"}, status_code=422)

    @app.exception_handler(sa_exc.DataError)
    async def data(_request: Request, exc: sa_exc.DataError):
        return JSONResponse({"detail": f"value not storable: {_first_line(exc)}"}, status_code=422)

    @app.exception_handler(sa_exc.OperationalError)
    async def unavailable(_request: Request, exc: sa_exc.OperationalError):
        if getattr(getattr(exc, "orig", None), "sqlstate", None) == "55000":  # object not in prerequisite state
            return JSONResponse({"detail": f"not ready: {_first_line(exc)}; on the PostgreSQL lane `iotlm db maintain` "
                                           "refreshes the hourly aggregates"}, status_code=409)
        log.warning("database unavailable: %s", _first_line(exc))
        return JSONResponse({"detail": "the database is unavailable; try again shortly"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(AlarmTransitionError)
    async def transition(_request: Request, exc: AlarmTransitionError):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    from redis.exceptions import ConnectionError as RedisConnectionError

    @app.exception_handler(RedisConnectionError)
    async def redis_down(_request: Request, exc: RedisConnectionError):
        return JSONResponse({"detail": "live state (Redis) is unavailable; try again shortly"}, status_code=503,
                            headers={"Retry-After": "5"})
