"""What route handlers depend on, as typed aliases: the store, the fleet registry, and the caller's key.

    def handler(store: Store, caller: AdminKey): ...

`require(scope)` answers 401 for no key or a bad one (counting failed attempts per client, 429 past
the limit) and 403 for a valid key without the scope.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from admin.keys import Caller, KeyRefused, authenticate
from admin.security import granted

log = logging.getLogger(__name__)


class DataStore:
    """The API's database. PGlite serves one connection at a time, so there every use is serialized."""

    def __init__(self, engine: Engine, single_connection: bool):
        self.engine = engine
        self._lock = threading.Lock() if single_connection else None

    @contextlib.contextmanager
    def begin(self):
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._lock or contextlib.nullcontext(), self.engine.begin() as conn:
            yield conn

    def serialized(self):
        """Held around work that opens its own connections (storage.queries)."""
        return self._lock or contextlib.nullcontext()

    @contextlib.contextmanager
    def connect(self):
        with self._lock or contextlib.nullcontext(), self.engine.connect() as conn:
            yield conn


def _store(request: Request) -> DataStore:
    return request.app.state.store


def _registry(request: Request):
    return request.app.state.registry


Store = Annotated[DataStore, Depends(_store)]
bearer = HTTPBearer(auto_error=False, description="An API key from `iotlm keys create`.")
UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def _caller(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Caller:
    if credentials is None:
        raise HTTPException(401, "no API key: send the header 'Authorization: Bearer <key>'", headers=UNAUTHORIZED)
    limiter = request.app.state.failed_attempts
    client = request.client.host if request.client else "unknown"
    wait = limiter.retry_after(client)
    if wait is not None:
        raise HTTPException(429, f"too many failed key attempts from {client}; try again in {wait:.0f} s",
                            headers={"Retry-After": str(max(1, round(wait)))})
    try:
        with request.app.state.store.begin() as conn:
            return authenticate(conn, credentials.credentials)
    except KeyRefused as exc:
        limiter.failed(client)
        raise HTTPException(401, exc.reason, headers=UNAUTHORIZED) from None


def require(scope: str):
    """A dependency giving the caller, who must hold `scope` (or a scope implying it)."""

    def check(caller: Caller = Depends(_caller)) -> Caller:
        if scope not in granted(list(caller.scopes)):
            raise HTTPException(403, f"this needs a key with scope {scope!r} (admin implies label implies read); "
                                     f"key {caller.key_id} has {', '.join(caller.scopes) or 'no scope'}")
        return caller

    check.scope = scope  # read by admin.app to document each route's scope in the OpenAPI spec
    return check


ReadKey = Annotated[Caller, Depends(require("read"))]
LabelKey = Annotated[Caller, Depends(require("label"))]
AdminKey = Annotated[Caller, Depends(require("admin"))]


def fleet_changed(request: Request, entity: str) -> None:
    """After a registry write: this process's registry reloads now, every other reader on the notice."""
    from admin.registry import publish_change

    state = request.app.state
    try:
        state.registry.reload()
    except Exception:  # the write is committed; the registry catches up on its timer
        pass
    if entity == "devices":
        from deploy.mqtt_accounts import sync_registry

        # the local broker's device accounts follow the registry: a revoked device is refused at once
        try:
            with state.store.connect() as conn:
                sync_registry(state.settings, conn)
        except Exception:  # the write is committed; the next device change syncs again
            log.exception("cannot update the MQTT broker's device accounts")
    producer = state.producer()
    if producer is not None:
        publish_change(producer, state.settings, entity)
