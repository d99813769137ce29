"""Session fixtures shared by every test folder.

`settings` points the whole suite at its own state folder (so a running demo is left alone);
`stack` starts the real local services once per session and stops, at the end, only what it started.
"""

from __future__ import annotations

import pytest

from iotlm.settings import PROJECT_ROOT, Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(state_dir=PROJECT_ROOT / ".state" / "test")


@pytest.fixture(scope="session")
def stack(settings: Settings):
    """Kafka, PostgreSQL, Redis and Mosquitto, healthy, on 127.0.0.1."""
    from deploy.stack import Stack

    stack = Stack(settings)
    started = stack.up()
    yield stack
    stack.down(only=started)
