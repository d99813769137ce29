"""Write throughput of PredictionWriter against raw COPY of the same rows into a plain table.

    iotlm bench storage --rows 1000000      (or python -m benchmarks.bench_storage)

PostgreSQL lane (a PostgreSQL 15 of the benchmark's own, started through the stack API): each chunk of rows is
written once through PredictionWriter (binary COPY into staging + INSERT ... ON CONFLICT into the daily
partitions, primary key checked) and once by a bare binary COPY into an unindexed, unpartitioned table:
the floor any write path pays. Chunks alternate between the two so machine noise hits both alike.
Optionally a smaller run on the TimescaleDB lane (PGlite, multi-row INSERT).
Writes benchmarks/results/storage.json and storage.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from psycopg.types.json import Jsonb
from sqlalchemy import create_engine, make_url, text

from benchmarks.machine import RESULTS_DIR, write_result
from deploy.process import free_ports
from iotlm.settings import Settings
from storage import migrate
from storage.lane import open_engine
from storage.writer import PREDICTIONS, PredictionRow, PredictionWriter, column_type_oids

LABELS = ["walking", "walking upstairs", "walking downstairs", "sitting", "standing", "lying"]
DATABASE = "bench_storage"


def make_rows(first: int, n: int, devices: int, start: datetime) -> list[PredictionRow]:
    """Rows as the stream produces them: devices interleaved, 1.28 s hop, a 6-label distribution."""
    rows = []
    for i in range(first, first + n):
        device, step = i % devices, i // devices
        t = start + timedelta(seconds=1.28 * step)
        top = (step // 40 + device) % len(LABELS)
        p = 0.55 + (i % 7) / 20
        dist = {lab: round(p if k == top else (1 - p) / (len(LABELS) - 1), 4) for k, lab in enumerate(LABELS)}
        rows.append(PredictionRow(f"sim-{device:04d}", t, t + timedelta(seconds=2.56), "motion-v1", LABELS[top], p,
                                  dist, f"room-{device % 50:02d}", None))
    return rows


def raw_copy(engine, rows: list[PredictionRow], table: str = "plain_predictions") -> None:
    """The floor: one binary COPY of the same values into `table` (a plain one: nothing else)."""
    columns = PREDICTIONS.columns
    json_at = columns.index("distribution")
    raw = engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cur:
            types = column_type_oids(cur, table, columns)
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row in rows:
                    values = [getattr(row, c) for c in columns]
                    values[json_at] = Jsonb(values[json_at])
                    copy.write_row(values)
        raw.commit()
    finally:
        raw.close()


def bench_postgres(settings: Settings, total: int, chunk: int, devices: int) -> dict:
    admin = create_engine(settings.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {DATABASE}"))
    url = make_url(settings.database_url).set(database=DATABASE).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url, lane="postgresql")
        engine = open_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE plain_predictions (LIKE window_predictions INCLUDING DEFAULTS)"))
            # the same key and indexes, no partitions: what the table's indexes alone cost a bare COPY
            conn.execute(text("CREATE TABLE indexed_predictions (LIKE window_predictions INCLUDING DEFAULTS "
                              "INCLUDING INDEXES)"))
            pg_version = conn.execute(text("SHOW server_version")).scalar_one()
        writer = PredictionWriter(engine, storage_settings=settings.storage)
        # Start a day ago so the rows spread over the migration's daily partitions, as live data does.
        start = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
        writer_s = copy_s = indexed_s = 0.0
        stored = 0
        chunk_ratios = []  # writer vs COPY per chunk: the spread of the ratio
        for first in range(0, total, chunk):
            rows = make_rows(first, min(chunk, total - first), devices, start)
            t = time.perf_counter()
            stored += writer.write(rows)
            chunk_writer_s = time.perf_counter() - t
            t = time.perf_counter()
            raw_copy(engine, rows)
            chunk_copy_s = time.perf_counter() - t
            t = time.perf_counter()
            raw_copy(engine, rows, "indexed_predictions")
            indexed_s += time.perf_counter() - t
            writer_s, copy_s = writer_s + chunk_writer_s, copy_s + chunk_copy_s
            chunk_ratios.append(chunk_copy_s / chunk_writer_s)
        redelivery = make_rows(0, chunk, devices, start)
        t = time.perf_counter()
        duplicates_stored = writer.write(redelivery)
        redelivery_s = time.perf_counter() - t
        with engine.connect() as conn:
            in_table = conn.execute(text("SELECT count(*) FROM window_predictions")).scalar_one()
            partitions = conn.execute(text(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'window_predictions'::regclass")).scalar_one()
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        admin.dispose()
    assert stored == in_table == total and duplicates_stored == 0
    return {
        "postgres_version": pg_version,
        "rows": total,
        "chunk_rows": chunk,
        "writer_batch_rows": settings.storage.write_batch_rows,
        "devices": devices,
        "window_predictions_partitions": partitions,
        "prediction_writer": {"seconds": round(writer_s, 2), "rows_per_s": round(total / writer_s)},
        "raw_copy_plain_table": {"seconds": round(copy_s, 2), "rows_per_s": round(total / copy_s)},
        "raw_copy_indexed_table": {"seconds": round(indexed_s, 2), "rows_per_s": round(total / indexed_s)},
        "writer_vs_raw_copy_indexed": round(indexed_s / writer_s, 3),
        "writer_vs_raw_copy": round(copy_s / writer_s, 3),
        "writer_vs_raw_copy_per_chunk": {"median": round(float(statistics.median(chunk_ratios)), 3),
                                         "min": round(min(chunk_ratios), 3), "max": round(max(chunk_ratios), 3),
                                         "chunks": len(chunk_ratios)},
        "redelivery_of_a_chunk": {"rows": chunk, "new_rows": duplicates_stored, "seconds": round(redelivery_s, 2)},
    }


def plain_insert(engine, writer: PredictionWriter, rows: list[PredictionRow]) -> None:
    """The TimescaleDB lane's floor (PGlite has no COPY FROM STDIN): the writer's own multi-row INSERT
    statements, into a plain table, without ON CONFLICT."""
    head = writer._insert_head.replace("INSERT INTO window_predictions", "INSERT INTO plain_predictions")
    raw = engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cur:
            for chunk in writer._statement_chunks(rows):
                cur.execute(head + ", ".join([writer._insert_row] * len(chunk)), [v for values in chunk for v in values])
        raw.commit()
    finally:
        raw.close()


def bench_timescale(settings: Settings, total: int, devices: int, chunk: int = 5_000) -> dict:
    migrate.downgrade(settings.timescale_url)
    migrate.upgrade(settings.timescale_url, lane="timescale")
    engine = open_engine(settings.timescale_url, single_connection=True)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE plain_predictions (LIKE window_predictions INCLUDING DEFAULTS)"))
        writer = PredictionWriter(engine, storage_settings=settings.storage)
        start = datetime.now(timezone.utc) - timedelta(hours=2)
        writer_s = insert_s = 0.0
        stored = 0
        for first in range(0, total, chunk):  # alternating, as on the PostgreSQL lane
            rows = make_rows(first, min(chunk, total - first), devices, start)
            t = time.perf_counter()
            stored += writer.write(rows)
            writer_s += time.perf_counter() - t
            t = time.perf_counter()
            plain_insert(engine, writer, rows)
            insert_s += time.perf_counter() - t
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE plain_predictions"))
    finally:
        engine.dispose()
        migrate.downgrade(settings.timescale_url)
    assert stored == total
    return {"server": "PGlite (WASM) + TimescaleDB, multi-row INSERT ... ON CONFLICT (no COPY FROM STDIN)",
            "rows": total, "seconds": round(writer_s, 2), "rows_per_s": round(total / writer_s),
            "plain_insert": {"seconds": round(insert_s, 2), "rows_per_s": round(total / insert_s)},
            "writer_vs_plain_insert": round(insert_s / writer_s, 3)}


def write_markdown(result: dict, path) -> None:
    pg, m = result["postgresql"], result["machine"]
    lines = [
        "# Storage write throughput", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM; PostgreSQL {pg['postgres_version']};"
        f" measured {m['measured_at']} (commit {m['commit']}); 1-minute load average"
        f" {result['load_average_1m']['before']} before, {result['load_average_1m']['after']} after.", "",
        f"{pg['rows']:,} window predictions, {pg['devices']} devices, written in chunks of {pg['chunk_rows']:,}"
        f" (writer transactions of {pg['writer_batch_rows']:,} rows), the two paths alternating per chunk.", "",
        "| path | seconds | rows/s |", "|---|---:|---:|",
        f"| PredictionWriter: binary COPY straight into the daily partitions (primary key, BRIN, room index);"
        f" a batch holding a stored key falls back to staging + INSERT ... ON CONFLICT DO NOTHING |"
        f" {pg['prediction_writer']['seconds']} | {pg['prediction_writer']['rows_per_s']:,} |",
        f"| raw binary COPY into a plain table (no key, no index, no partitions) |"
        f" {pg['raw_copy_plain_table']['seconds']} |"
        f" {pg['raw_copy_plain_table']['rows_per_s']:,} |",
        f"| raw binary COPY into a table with the same key and indexes, unpartitioned |"
        f" {pg['raw_copy_indexed_table']['seconds']} | {pg['raw_copy_indexed_table']['rows_per_s']:,} |", "",
        f"PredictionWriter runs at **{pg['writer_vs_raw_copy']:.0%}** of raw COPY speed into a plain table, and at"
        f" {pg['writer_vs_raw_copy_indexed']:.0%} of a bare COPY into a table with its key and indexes. Re-delivering"
        f" {pg['redelivery_of_a_chunk']['rows']:,} rows stored {pg['redelivery_of_a_chunk']['new_rows']} new rows"
        f" in {pg['redelivery_of_a_chunk']['seconds']} s.",
    ]
    if "timescaledb" in result:
        ts = result["timescaledb"]
        lines += ["", f"TimescaleDB lane ({ts['server']}): {ts['rows']:,} rows in {ts['seconds']} s,"
                      f" {ts['rows_per_s']:,} rows/s; the same INSERT statements into a plain table without"
                      f" ON CONFLICT (the lane's floor: PGlite has no COPY) {ts['plain_insert']['rows_per_s']:,}"
                      f" rows/s: the writer at **{ts['writer_vs_plain_insert']:.0%}** of it."]
    path.write_text("\n".join(lines) + "\n")


def run(rows: int, chunk: int, devices: int, timescale_rows: int) -> dict:
    """Both lanes on servers of the benchmark's own (stack API, private state dir and ports): nobody
    else's tests stop them mid-run, and the numbers are not shared with their load on the same server."""
    from deploy.stack import Stack

    with tempfile.TemporaryDirectory(prefix="iotlm-bench-storage-") as state_dir:
        base = Settings()
        postgres_port, timescale_port = free_ports(2)
        settings = base.model_copy(update={
            "state_dir": Path(state_dir),
            "stack": base.stack.model_copy(update={"postgres_port": postgres_port, "timescale_port": timescale_port}),
        })
        stack = Stack(settings)
        services = ["postgres"] + (["timescale"] if timescale_rows else [])
        stack.up(services)
        load_before = os.getloadavg()[0]
        try:
            result = {"postgresql": bench_postgres(settings, rows, chunk, devices)}
            if timescale_rows:
                result["timescaledb"] = bench_timescale(settings, timescale_rows, devices)
        finally:
            stack.down(only=services)
            shutil.rmtree(stack.services["postgres"].data_root, ignore_errors=True)
    # The machine may be shared: the load says how much of it the run really had.
    result["load_average_1m"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    return result


def save(result: dict) -> dict:
    """benchmarks/results/storage.json and storage.md; returns the result as written (with the machine)."""
    path = write_result("storage", result)
    written = json.loads(path.read_text())
    write_markdown(written, RESULTS_DIR / "storage.md")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--timescale-rows", type=int, default=20_000, help="0 skips the TimescaleDB lane run")
    args = parser.parse_args()
    print(json.dumps(save(run(args.rows, args.chunk, args.devices, args.timescale_rows)), indent=2))
