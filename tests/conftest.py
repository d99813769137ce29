"""Session fixtures shared by every test folder.

`settings` points the whole suite at its own stack: its own state folder and its own ports (the
developer stack's + TEST_PORT_OFFSET), so tests and a running demo never share, start or stop each
other's services. `stack` starts the real local services once per session; `timescale` adds the
PGlite TimescaleDB server. Both hold a lease on the stack: at the end, the last test session still
running (several engineers may run tests at once against the same state folder) stops what the
tests started. A test that runs `iotlm` in a child process passes it `settings_env`.
"""

from __future__ import annotations

import os

import pytest

from iotlm.settings import PROJECT_ROOT, Settings

# postgres 16432, redis 17379, kafka 20092, ... beside a demo's 15432, 16379, 19092; a second checkout
# testing at the same time on the same machine sets IOTLM_TEST_PORT_OFFSET (e.g. 2000) to get a stack of its own
TEST_PORT_OFFSET = int(os.environ.get("IOTLM_TEST_PORT_OFFSET", "1000"))
# Tests replay devices nobody registered: they run on the settings-based admission (here, so child
# processes inherit it too); the registry's own tests (tests/admin, the demo) choose it explicitly.
os.environ.setdefault("IOTLM_INGEST__ADMISSION", "settings")


@pytest.fixture(scope="session")
def settings() -> Settings:
    base = Settings(state_dir=PROJECT_ROOT / ".state" / "test")
    return base.model_copy(update={"stack": base.stack.with_ports_moved(TEST_PORT_OFFSET)})


@pytest.fixture(scope="session")
def settings_env(settings: Settings) -> dict[str, str]:
    """The environment of a child `iotlm` process that must use this session's state dir and stack
    (without it, the child reads the developer defaults and talks to a demo's services)."""
    return os.environ | {"IOTLM_STATE_DIR": str(settings.state_dir), **settings.stack.environ()}


@pytest.fixture(scope="session")
def stack(settings: Settings):
    """Kafka, PostgreSQL, Redis and Mosquitto, healthy, on 127.0.0.1 (topics created)."""
    from deploy.stack import Stack

    with Stack(settings).leased() as stack:
        yield stack


@pytest.fixture(scope="session")
def timescale(settings: Settings):
    """The PGlite TimescaleDB server, healthy; connect with `settings.timescale_url`
    (one client at a time: close connections promptly)."""
    from deploy.stack import Stack

    with Stack(settings).leased(["timescale"]) as stack:
        yield stack
