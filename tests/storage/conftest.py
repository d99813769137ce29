"""Fresh databases for the storage tests, on both lanes.

PostgreSQL lane: a database of its own per test module (CREATE DATABASE on the stack's server), so
other parts' tests on the same server are never disturbed. TimescaleDB lane: PGlite has one
database, so the module starts from an empty schema (downgrade to base) and leaves it empty.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import create_engine, make_url, text

from storage import migrate
from storage.lane import open_engine


def _module_db_name(request) -> str:
    return "storage_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def pg_url(settings, stack, request):
    """URL of an empty database of this module's own on the stack's PostgreSQL; dropped afterwards."""
    name = _module_db_name(request)
    admin = create_engine(settings.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield make_url(settings.database_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="module")
def ts_url(settings, timescale):
    """URL of the PGlite TimescaleDB with no storage schema in it (and none left after the module)."""
    migrate.downgrade(settings.timescale_url)
    yield settings.timescale_url
    migrate.downgrade(settings.timescale_url)


@pytest.fixture(scope="module", params=["postgresql", pytest.param("timescaledb", marks=pytest.mark.timescale)])
def lane_url(request):
    """Each test using it runs once per lane, against an empty database of that lane."""
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "ts_url")


@pytest.fixture(scope="module")
def migrated(lane_url):
    """(url, lane, engine) with the schema at head; the engine never pools (PGlite-safe)."""
    lane = migrate.upgrade(lane_url)
    engine = open_engine(lane_url, single_connection=True)
    yield lane_url, lane, engine
    engine.dispose()
