"""The PGlite TimescaleDB server: Postgres wire protocol with the timescaledb extension."""

from __future__ import annotations

import gc
import uuid

import pytest

from iotlm.settings import Settings


def _connect(settings: Settings):
    import psycopg

    s = settings.stack
    return psycopg.connect(host=s.host, port=s.timescale_port, user="postgres", password="any",
                           dbname="postgres", sslmode="disable", connect_timeout=10)


class TestTimescaleLite:
    def test_extension_is_installed(self, timescale, settings: Settings):
        with _connect(settings) as conn:
            (version,) = conn.execute("SELECT extversion FROM pg_extension WHERE extname='timescaledb'").fetchone()
        assert version.split(".")[0] == "2"
        assert {s.name: s.healthy for s in timescale.status(["timescale"])} == {"timescale": True}

    def test_hypertable_and_time_bucket(self, timescale, settings: Settings):
        table = f"readings_{uuid.uuid4().hex[:8]}"
        with _connect(settings) as conn:
            conn.execute(f"CREATE TABLE {table} (ts timestamptz NOT NULL, device text, value double precision)")
            conn.execute(f"SELECT create_hypertable('{table}', 'ts')")
            conn.execute(
                f"INSERT INTO {table} SELECT timestamptz '2026-01-01' + i * interval '10 seconds', 'dev-1', i "
                "FROM generate_series(0, 11) AS i"
            )
            rows = conn.execute(
                f"SELECT time_bucket('1 minute', ts) AS minute, count(*), avg(value) FROM {table} GROUP BY 1 ORDER BY 1"
            ).fetchall()
            conn.execute(f"DROP TABLE {table}")
        assert [(r[1], r[2]) for r in rows] == [(6, 2.5), (6, 8.5)]

    def test_status_while_another_client_holds_it_is_busy_not_down(self, timescale, settings: Settings):
        with _connect(settings) as holder:
            holder.execute("SELECT 1")
            (state,) = timescale.status(["timescale"])
        assert state.healthy and state.detail.startswith("busy"), state

    def test_sqlalchemy_url_from_settings(self, timescale, settings: Settings):
        import sqlalchemy

        engine = sqlalchemy.create_engine(settings.timescale_url, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
        engine.dispose()


class TestOneClientAtATime:
    """On a private server (the shared one may be older code started by another session)."""

    def test_a_client_that_gives_up_waiting_does_not_block_the_next(self, tmp_path):
        import socket

        import psycopg

        from deploy.stack import Stack
        from iotlm.settings import StackSettings

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        private = Settings(state_dir=tmp_path / "state", stack=StackSettings(timescale_port=port))
        stack = Stack(private)
        assert stack.up(["timescale"]) == ["timescale"]
        try:
            with _connect(private) as holder:
                holder.execute("SELECT 1")
                # A psycopg connect that times out keeps its socket until garbage collection: the
                # server must still move on once the holder leaves and the waiter hangs up.
                with pytest.raises(psycopg.OperationalError):
                    psycopg.connect(host="127.0.0.1", port=port, user="postgres", password="x",
                                    dbname="postgres", sslmode="disable", connect_timeout=1).close()
                (state,) = stack.status(["timescale"])
                assert state.healthy and state.detail.startswith("busy")
            gc.collect()  # the timed-out waiter's socket closes here
            with _connect(private) as after:
                assert after.execute("SELECT 2").fetchone() == (2,)
            (state,) = stack.status(["timescale"])
            assert state.healthy and state.detail.startswith("TimescaleDB"), state
        finally:
            assert stack.down() == ["timescale"]
        assert not stack.status(["timescale"])[0].healthy
