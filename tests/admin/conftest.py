"""The admin API under test: a real uvicorn server on a free port, on a database, topics and Redis
prefix of its own, with one key of each kind (and a revoked and an expired one)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import types
import uuid
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from deploy.process import free_port_block, free_ports
from iotlm.credentials import postgres_connect_kwargs, redis_client


@dataclass
class ApiUnderTest:
    url: str
    settings: object
    app: object
    keys: dict[str, str]  # admin, label, read, revoked, expired -> key

    def client(self, key: str | None = "admin", **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys.get(key, key)}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


def private_settings(settings, tag: str, **api):
    """`settings` with its own database, topics, consumer group and Redis prefix (created here)."""
    import psycopg

    from deploy.topics import ensure_topics

    db = f"iotlm_admin_{tag}"
    with psycopg.connect(**postgres_connect_kwargs(settings), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    private = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={
            "frames_topic": f"test.{tag}.frames", "dlq_topic": f"test.{tag}.dlq",
            "alerts_topic": f"test.{tag}.alerts", "control_topic": f"test.{tag}.control", "partitions": 2,
        }),
        "workers": settings.workers.model_copy(update={
            "consumer_group": f"test-{tag}", "metrics_port": free_port_block(4), "model_key": f"test:{tag}:model",
            "commit_interval_s": 0.5,
        }),
        "stack": settings.stack.model_copy(update={"postgres_db": db}),
        "storage": settings.storage.model_copy(update={"lane": "postgresql", "redis_key_prefix": f"test:{tag}"}),
        "api": settings.api.model_copy(update={"registry_refresh_s": 300.0, **api}),
    })
    ensure_topics(private)
    return private


def drop_private(private) -> None:
    import psycopg
    from deploy.topics import admin_client, topic_partitions

    s = private.stack
    with psycopg.connect(**postgres_connect_kwargs(private, dbname="iotlm"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{s.postgres_db}" WITH (FORCE)')
    client = redis_client(private, "admin")
    for key in client.scan_iter(f"{private.storage.redis_key_prefix}:*"):
        client.delete(key)
    client.close()
    admin = admin_client(private, client_id="iotlm-test-cleanup")
    try:
        admin.delete_topics(list(topic_partitions(private)))
    finally:
        admin.close()


def make_keys(settings) -> dict[str, str]:
    from sqlalchemy import text

    from admin.keys import create_key, revoke_key
    from storage.lane import engine_from_settings

    engine = engine_from_settings(settings)
    try:
        with engine.begin() as conn:
            keys = {scope: create_key(conn, scope, f"test-{scope}")[0] for scope in ("admin", "label", "read")}
            keys["revoked"], row = create_key(conn, "admin", "test-revoked")
            revoke_key(conn, row["id"])
            keys["expired"], row = create_key(conn, "admin", "test-expired", expires_days=1)
            conn.execute(text("UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = :id"),
                         {"id": row["id"]})
    finally:
        engine.dispose()
    return keys


def serve(settings):
    """(url, app, stop()) of the API running in a thread of this process, on a free port."""
    from admin.app import serve_in_thread

    return serve_in_thread(settings, free_ports()[0])


def _start(settings, cleanups: list, **api_settings) -> ApiUnderTest:
    from storage.migrate import upgrade

    private = private_settings(settings, uuid.uuid4().hex[:10], **api_settings)
    cleanups.append(lambda: drop_private(private))
    upgrade(private.database_url)
    keys = make_keys(private)
    url, app, stop = serve(private)
    cleanups.append(stop)
    return ApiUnderTest(url, private, app, keys)


def _clean(cleanups: list) -> None:
    for cleanup in reversed(cleanups):
        cleanup()


@pytest.fixture(scope="module")
def api(settings, stack):
    """The API on a private database; module-scoped: tests in a module share its records."""
    cleanups: list = []
    try:
        yield _start(settings, cleanups, failed_auth_limit=100_000)
    finally:
        _clean(cleanups)


@pytest.fixture
def start_api(settings, stack):
    """fn(**api settings) -> another API of this test's own, stopped and dropped afterwards."""
    cleanups: list = []
    try:
        yield lambda **api_settings: _start(settings, cleanups, **api_settings)
    finally:
        _clean(cleanups)


# -- live workers ---------------------------------------------------------------------------------

G = 9.80665


def frames(device_id: str, n: int, t0: float, *, stuck_axis: int | None = None, fall_at: int | None = None,
           seed: int = 0):
    """`n` one-second 50 Hz IMU frames of a person standing; an axis stuck flat, or a fall in frame `fall_at`."""
    from ingest.frame import Frame, ImuStream

    rng = np.random.default_rng(seed)
    out = []
    for seq in range(n):
        acc = rng.normal([0.0, 0.0, G], 0.3, (50, 3)).astype(np.float32)
        if stuck_axis is not None:
            acc[:, stuck_axis] = 0.5
        if fall_at == seq:
            acc[10:25] = rng.normal(0.0, 0.2, (15, 3))  # 0.3 s of free fall
            acc[25:30] = [0.0, 0.0, 4.0 * G]  # then the impact
        out.append(Frame(device_id=device_id, seq=seq, t0=t0 + seq, duration_s=1.0, placement="wrist",
                         imu=ImuStream(rate_hz=50.0, acc=acc)))
    return out


def send(settings, batch) -> None:
    """Straight onto the frames topic (as if the gate had let them in)."""
    from ingest.producer import DeviceProducer

    with DeviceProducer(settings) as producer:
        for frame in batch:
            producer.send(frame)


def wait_until(condition, timeout_s: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


@contextlib.contextmanager
def live_worker(settings, fleet=None):
    """A StreamWorker running in a thread of its own (its own event loop) until the block ends."""
    from stream_workers.app import StreamWorker

    box: dict = {}
    started = threading.Event()

    async def main():
        box["stop"] = asyncio.Event()
        box["worker"] = worker = StreamWorker(settings, 0, serve_metrics=False, fleet=fleet)
        run = asyncio.create_task(worker.run(box["stop"]))
        await asyncio.wait([asyncio.create_task(worker.ready.wait()), run], return_when=asyncio.FIRST_COMPLETED)
        started.set()
        return await run

    def target():
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        try:
            box["totals"] = loop.run_until_complete(main())
        except BaseException as exc:  # surfaced to the test below
            box["error"] = exc
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=target, name="live-worker", daemon=True)
    thread.start()
    if not started.wait(180) or "error" in box:
        raise RuntimeError(f"the worker did not start: {box.get('error')}")
    try:
        yield box["worker"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(timeout=90)
        if "error" in box:
            raise box["error"]


@pytest.fixture
def live():
    """Helpers: frames, send, wait_until, live_worker; make_keys and serve for an API on other settings."""
    return types.SimpleNamespace(frames=frames, send=send, wait_until=wait_until, live_worker=live_worker,
                                 make_keys=make_keys, serve=serve)
