"""The admin API as a FastAPI app: `create_app(settings)`, served by `iotlm api`.

Everything a request needs lives on `app.state`, made once at start-up: the store (database), the
fleet registry (what the gate and the workers also read), the live state (Redis), and, made when
first needed so the API starts without Kafka, the producer and the ingest gate for imports.
A new capability (fine-tuning jobs, questions) is one more module in `admin/routes` and one more
entry in `ROUTERS`.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from fastapi import FastAPI

from admin import errors
from admin.routes import (alarms, ask, audit, buildings, devices, finetune, frames, health, keys, label_sets, labels,
                          model_versions, queries, rooms, rules, sites)

log = logging.getLogger(__name__)
ROUTERS = [health, keys, sites, buildings, rooms, devices, label_sets, labels, rules, alarms, queries, frames, audit,
           model_versions, finetune, ask]


class _Lazy:
    """A service made on first use and kept; None (and tried again next time) while it cannot be made."""

    def __init__(self, make):
        self.make = make
        self.value = None
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            if self.value is None:
                try:
                    self.value = self.make()
                except Exception as exc:
                    log.warning("cannot start %s: %s", getattr(self.make, "__name__", "service"), exc)
            return self.value


def _kafka_producer(settings):
    """A producer, or an error at once when no broker answers (kafka-python would wait a minute for one)."""
    import socket

    from ingest.producer import DeviceProducer

    socket.create_connection((settings.stack.host_of("kafka"), settings.stack.kafka_port), timeout=2).close()
    return DeviceProducer(settings, client_id="iotlm-admin-api", principal="api")


def _start_registry(settings, store):
    from admin.registry import FleetRegistry

    try:
        import socket

        socket.create_connection((settings.stack.host_of("kafka"), settings.stack.kafka_port), timeout=2).close()
        return FleetRegistry(settings, store.engine, serialized=store.serialized).start()
    except Exception as exc:  # no Kafka: follow changes by reloading on the timer only
        log.warning("fleet registry without change notices (%s); reloading every %.0f s", exc,
                    settings.api.registry_refresh_s)
        return FleetRegistry(settings, store.engine, listen=False, serialized=store.serialized).start()


def create_app(settings, *, migrate: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from admin.alarms import AlarmKeeper
        from admin.deps import DataStore
        from admin.security import FailedAttempts
        from ingest.gate import IngestGate
        from storage.lane import engine_from_settings, uses_timescale
        from storage.live_state import LiveState
        from storage.queries import StorageQueries

        if migrate:
            from storage.lane import url_from_settings
            from storage.migrate import upgrade

            upgrade(url_from_settings(settings))
        engine = engine_from_settings(settings, principal="api")
        state = app.state
        state.settings = settings
        state.store = DataStore(engine, uses_timescale(settings) and settings.storage.timescale_single_connection)
        state.failed_attempts = FailedAttempts(settings.api.failed_auth_limit, settings.api.failed_auth_window_s)
        state.live_state = LiveState.from_settings(settings, "api")
        state.registry = _start_registry(settings, state.store)
        state.producer = _Lazy(lambda: _kafka_producer(settings))
        state.gate = _Lazy(lambda: IngestGate(settings, state.producer(), admission=state.registry)
                           if state.producer() is not None else None)
        state.queries = _Lazy(lambda: StorageQueries(engine))
        keeper = AlarmKeeper(settings, state.store).start() if settings.api.alarm_keeper else None
        try:
            yield
        finally:
            if keeper is not None:
                keeper.close()
            state.registry.close()
            if state.producer.value is not None:
                state.producer.value.close()
            state.live_state.redis.close()
            engine.dispose()

    app = FastAPI(
        title="IoT-LM admin API",
        version="1",
        description="The fleet's registry, labels, alert rules and alarms, and what the platform knows. "
                    "Every /v1 route needs `Authorization: Bearer <key>` (`iotlm keys create`); scopes: "
                    "read, label (implies read), admin (implies both).",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in ROUTERS:
        _document_scopes(module.router)
        app.include_router(module.router)
    return app


def _document_scopes(router) -> None:
    """Each operation's spec names the scope it needs (`x-scope`), read from its key dependency."""
    from fastapi.routing import APIRoute

    def scopes(dependant) -> list[str]:
        found = [d.call.scope for d in dependant.dependencies if hasattr(d.call, "scope")]
        return found + [s for d in dependant.dependencies for s in scopes(d)]

    for route in router.routes:
        if isinstance(route, APIRoute) and (needed := scopes(route.dependant)):
            route.openapi_extra = {**(route.openapi_extra or {}), "x-scope": needed[0]}
            route.description = f"{route.description}\n\nNeeds a key with scope `{needed[0]}`.".strip()


def serve_in_thread(settings, port: int) -> tuple[str, FastAPI, callable]:
    """(url, app, stop()) of the API served by uvicorn on 127.0.0.1:`port` in a thread of this process
    (the demo's API, and the tests')."""
    import time

    import uvicorn

    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="admin-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the admin API did not start")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)

    return f"http://127.0.0.1:{port}", app, stop
