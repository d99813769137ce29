"""Session fixtures shared by every test folder.

`settings` points the whole suite at its own state folder (so a running demo is left alone);
`stack` starts the real local services once per session; `timescale` adds the PGlite TimescaleDB
server. Both hold a lease on the stack: at the end, the last test session still running (several
engineers may run tests at once against the same state folder) stops what the tests started.
"""

from __future__ import annotations

import pytest

from iotlm.settings import PROJECT_ROOT, Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(state_dir=PROJECT_ROOT / ".state" / "test")


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
