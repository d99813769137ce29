"""The two storage lanes and the few SQL fragments that differ between them."""

from __future__ import annotations

from enum import Enum

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

# time_bucket's default origin for sub-month widths; date_bin given the same origin buckets identically.
BUCKET_ORIGIN = "2000-01-03 00:00:00+00"


class Lane(str, Enum):
    TIMESCALEDB = "timescaledb"
    POSTGRESQL = "postgresql"


def timescaledb_available(conn: Connection) -> bool:
    """True when the server can load the TimescaleDB extension (installed or installable)."""
    return conn.execute(
        text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).first() is not None


def choose_lane(conn: Connection, requested: str) -> Lane:
    """'auto' takes TimescaleDB when available; 'timescale'/'timescaledb' insists on it."""
    requested = requested.lower()
    if requested in ("postgresql", "postgres", "pg"):
        return Lane.POSTGRESQL
    available = timescaledb_available(conn)
    if requested in ("timescale", "timescaledb"):
        if not available:
            raise RuntimeError("lane 'timescale' requested but the server has no timescaledb extension")
        return Lane.TIMESCALEDB
    if requested != "auto":
        raise ValueError(f"unknown lane {requested!r}: expected postgresql, timescale or auto")
    return Lane.TIMESCALEDB if available else Lane.POSTGRESQL


def recorded_lane(conn: Connection) -> Lane:
    """The lane chosen when the schema was created (table `storage_lane`)."""
    return Lane(conn.execute(text("SELECT lane FROM storage_lane")).scalar_one())


def time_bucket_sql(lane: Lane, width: str, column: str) -> str:
    """SQL for the start of the `width`-long bucket holding `column`, identical on both lanes.

    `width` is a bound-parameter name or a literal interval expression, e.g. ":bucket" or
    "INTERVAL '1 hour'"; it is cast to interval here.
    """
    if lane is Lane.TIMESCALEDB:
        return f"time_bucket(CAST({width} AS interval), {column}, TIMESTAMPTZ '{BUCKET_ORIGIN}')"
    return f"date_bin(CAST({width} AS interval), {column}, TIMESTAMPTZ '{BUCKET_ORIGIN}')"


def open_engine(url: str, *, single_connection: bool = False) -> Engine:
    """An engine for `url`; `single_connection` (PGlite) opens one connection per use, never pooled."""
    if single_connection:
        # PGlite runs every client in one backend session, so server-side prepared statements of a
        # closed connection are still there and clash with the next client's: never prepare.
        engine = create_engine(url, poolclass=NullPool, connect_args={"prepare_threshold": None})
    else:
        engine = create_engine(url, pool_pre_ping=True)
    event.listen(engine, "connect", _load_timescaledb)
    return engine


def _load_timescaledb(dbapi_conn, _record) -> None:
    # TimescaleDB's insert hooks live in its shared library. A server that does not preload it
    # (PGlite after reopening its data directory) rejects inserts into hypertables until it is LOADed.
    with dbapi_conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') "
                    "AND current_setting('shared_preload_libraries') NOT LIKE '%timescaledb%'")
        if cur.fetchone()[0]:
            cur.execute("LOAD 'timescaledb'")
    dbapi_conn.commit()


def uses_timescale(settings, lane: str | None = None) -> bool:
    """Whether `lane` (default: settings.storage.lane) names the TimescaleDB server."""
    return (lane or settings.storage.lane).lower() in ("timescale", "timescaledb")


def url_from_settings(settings, lane: str | None = None, principal: str = "owner", *, with_password: bool = True) -> str:
    """The server of the lane: 'timescale' -> timescale_url (PGlite: one user, no roles), anything
    else -> the PostgreSQL database as `principal`'s role (iotlm.credentials)."""
    from iotlm.credentials import database_url

    if uses_timescale(settings, lane):
        return settings.timescale_url
    return database_url(settings, principal, with_password=with_password)


def engine_from_settings(settings, lane: str | None = None, principal: str = "owner") -> Engine:
    """The engine for the lane's server (`url_from_settings`), unpooled for the PGlite TimescaleDB."""
    single = uses_timescale(settings, lane) and settings.storage.timescale_single_connection
    return open_engine(url_from_settings(settings, lane, principal), single_connection=single)
