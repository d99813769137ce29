"""The PGlite TimescaleDB server: Postgres wire protocol with the timescaledb extension."""

from __future__ import annotations

import gc
import os
import time
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


@pytest.fixture(scope="module")
def private_timescale(tmp_path_factory):
    """Our own PGlite server as (Stack, Settings), stopped after this module: the shared one may be
    older code started by another session."""
    import socket

    from deploy.stack import Stack
    from iotlm.settings import StackSettings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    private = Settings(state_dir=tmp_path_factory.mktemp("timescale") / "state",
                       stack=StackSettings(timescale_port=port))
    stack = Stack(private)
    assert stack.up(["timescale"]) == ["timescale"]
    try:
        yield stack, private
    finally:
        assert stack.down() == ["timescale"]
    assert not stack.status(["timescale"])[0].healthy


class TestOneClientAtATime:
    def test_a_client_that_gives_up_waiting_does_not_block_the_next(self, private_timescale):
        import psycopg

        stack, private = private_timescale
        port = private.stack.timescale_port
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


class TestMessageFraming:
    """TCP delivers a client's bytes in arbitrary pieces (64 KiB reads, say); PGlite must still be
    given whole protocol messages, or a large one aborts it."""

    def test_megabyte_bytea_parameter_and_200_kb_statement_come_back_intact(self, private_timescale):
        stack, private = private_timescale
        (before,) = stack.status(["timescale"])
        blob = os.urandom(1_000_000)
        note = os.urandom(100_000).hex()  # 200 KB of SQL text in one statement
        table = f"blobs_{uuid.uuid4().hex[:8]}"
        with _connect(private) as conn:
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, data bytea, note text)")
            conn.execute(f"INSERT INTO {table} (id, data) VALUES (1, %s)", (blob,))
            conn.execute(f"INSERT INTO {table} (id, note) VALUES (2, '{note}')")
            assert conn.execute(f"SELECT data FROM {table} WHERE id = 1").fetchone() == (blob,)
            assert conn.execute(f"SELECT note FROM {table} WHERE id = 2").fetchone() == (note,)
            conn.execute(f"DROP TABLE {table}")
        with _connect(private) as again:  # the server lives on, for the next client too
            assert again.execute("SELECT 3").fetchone() == (3,)
        (after,) = stack.status(["timescale"])
        assert after.healthy and after.detail.startswith("TimescaleDB"), after
        assert after.pid == before.pid

    def test_messages_dribbled_byte_by_byte_and_pipelined(self, private_timescale):
        import socket
        import struct

        _, private = private_timescale

        def query(sql: str) -> bytes:
            body = sql.encode() + b"\0"
            return b"Q" + struct.pack("!I", len(body) + 4) + body

        params = b"user\0postgres\0database\0postgres\0\0"
        startup = struct.pack("!II", len(params) + 8, 196608) + params
        with socket.create_connection(("127.0.0.1", private.stack.timescale_port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(startup)):  # every header split, every length cut in two
                sock.sendall(startup[i:i + 1])
                time.sleep(0.002)
            assert _read_until_ready(sock)[0][0] == b"R"  # authentication: any password
            pipelined = query("SELECT 'first'") + query("SELECT 'second'")
            cut = len(query("SELECT 'first'")) + 3  # the second message's length split across reads
            sock.sendall(pipelined[:cut])
            time.sleep(0.2)
            sock.sendall(pipelined[cut:])
            rows = [body for kind, body in _read_until_ready(sock) + _read_until_ready(sock) if kind == b"D"]
            assert [row[6:] for row in rows] == [b"first", b"second"]
            sock.sendall(b"X" + struct.pack("!I", 4))


def _read_until_ready(sock) -> list[tuple[bytes, bytes]]:
    """Backend messages up to and including the next ReadyForQuery (answering PGlite's md5 request)."""
    import hashlib
    import struct

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "server closed the connection"
            data += chunk
        return data

    messages = []
    while True:
        kind = exactly(1)
        body = exactly(struct.unpack("!I", exactly(4))[0] - 4)
        messages.append((kind, body))
        if kind == b"R" and struct.unpack("!I", body[:4])[0] == 5:  # md5 password, with a 4-byte salt
            inner = hashlib.md5(b"any" + b"postgres").hexdigest().encode()
            password = b"md5" + hashlib.md5(inner + body[4:8]).hexdigest().encode() + b"\0"
            sock.sendall(b"p" + struct.pack("!I", len(password) + 4) + password)
        if kind == b"Z":
            return messages
