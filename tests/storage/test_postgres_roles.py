"""PostgreSQL roles on the stack's real server: none is a superuser, passwords are SCRAM only, and
each component's role can do its job and no more (storage/migrate.py grants, deploy/services.py
creates the roles)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from iotlm.credentials import POSTGRES_PRINCIPALS, postgres_connect_kwargs, postgres_role

pytestmark = pytest.mark.services


@pytest.fixture
def database(settings, stack):
    """A private database made by the owner and migrated (which grants the roles), dropped afterwards."""
    from storage.migrate import upgrade

    name = f"iotlm_roles_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**postgres_connect_kwargs(settings), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    private = settings.model_copy(update={"stack": settings.stack.model_copy(update={"postgres_db": name})})
    upgrade(private.database_url)
    yield private
    with psycopg.connect(**postgres_connect_kwargs(settings), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def connect(settings, principal: str):
    return psycopg.connect(**postgres_connect_kwargs(settings, principal), autocommit=True)


def test_no_project_role_is_a_superuser_and_passwords_are_scram(stack, settings):
    roles = [postgres_role(settings, p) for p in POSTGRES_PRINCIPALS]
    with connect(settings.model_copy(update={"stack": settings.stack.model_copy(update={"postgres_db": "postgres"})}),
                 "postgres") as conn:
        rows = conn.execute("SELECT rolname, rolsuper, rolcreaterole, rolbypassrls, left(rolpassword, 14) "
                            "FROM pg_authid WHERE rolname = ANY(%s)", (roles,)).fetchall()
        hba = conn.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type LIKE 'host%%'").fetchall()
    assert sorted(r[0] for r in rows) == sorted(roles)
    assert all(not superuser and not createrole and not bypass for _, superuser, createrole, bypass, _ in rows)
    assert {r[4] for r in rows} == {"SCRAM-SHA-256$"}
    assert hba == [("scram-sha-256",)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**(postgres_connect_kwargs(settings, "worker") | {"password": "iotlm"}), connect_timeout=5)


def test_worker_role_writes_results_and_cannot_drop_truncate_or_alter(database):
    with connect(database, "worker") as conn:
        # its job: results rows (the writers' upserts) and reading the registry
        conn.execute("INSERT INTO alerts (dedup_key, started_at, kind, severity, device_id) "
                     "VALUES ('fall:d1', now(), 'fall', 'critical', 'd1') "
                     "ON CONFLICT (dedup_key, started_at) DO UPDATE SET ended_at = excluded.started_at")
        conn.execute("SELECT count(*) FROM devices").fetchone()
        for statement in ("DROP TABLE window_predictions", "TRUNCATE window_predictions",
                          "ALTER TABLE window_predictions ADD COLUMN evil int", "DELETE FROM alerts",
                          "INSERT INTO devices (id) VALUES ('forged')", "CREATE TABLE mine (x int)",
                          "UPDATE api_keys SET scopes = ARRAY['admin']"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_reader_only_reads_and_api_cannot_change_the_schema(database):
    with connect(database, "reader") as conn:
        assert conn.execute("SELECT count(*) FROM window_predictions").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO devices (id) VALUES ('x')")
    with connect(database, "api") as conn:
        conn.execute("SELECT count(*) FROM api_keys").fetchone()
        for statement in ("DROP TABLE devices", "TRUNCATE audit_log", "ALTER TABLE devices DROP COLUMN room_id",
                          "DELETE FROM alembic_version"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_the_model_registry_and_job_queue_are_the_api_roles_to_change(database):
    """The workers read which versions exist; only the API's role (the API and its job runners) registers,
    promotes and runs jobs."""
    with connect(database, "api") as conn:
        version = conn.execute("INSERT INTO model_versions (name, version, path) VALUES ('motion', 'v-roles', '/m') "
                               "RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO finetune_jobs (base_model_version_id) VALUES (%s)", (version,))
    with connect(database, "worker") as conn:
        assert conn.execute("SELECT count(*) FROM model_versions").fetchone() == (1,)
        for statement in ("UPDATE model_versions SET status = 'promoted'", "UPDATE finetune_jobs SET status = 'running'",
                          "INSERT INTO model_versions (name, version, path) VALUES ('motion', 'forged', '/tmp')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
