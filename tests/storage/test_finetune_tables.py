"""The registry and the job queue on both lanes (PostgreSQL and the PGlite TimescaleDB): the 0005
columns, one promoted version at a time, promote/rollback bookkeeping, claim/recover/finish."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import exc, text

from finetune import jobs, registry

pytestmark = pytest.mark.services


def _version(conn, tmp_path, name: str, parent_id=None) -> dict:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(f'{{"version": "{name}"}}')
    (folder / "model.safetensors").write_bytes(name.encode() * 10)
    files, content = registry.file_hashes(folder)
    return registry.register(conn, version=name, path=folder, files=files, content_hash=content, labels=["a", "b"],
                             training={"label_ids": [1]}, metrics={}, parent_id=parent_id)


def test_registry_promote_rollback_and_one_promoted_version(migrated, tmp_path):
    _url, _lane, engine = migrated
    tag = tmp_path.name[-6:]
    with engine.begin() as conn:
        a = _version(conn, tmp_path, f"a-{tag}")
        b = _version(conn, tmp_path, f"b-{tag}", parent_id=a["id"])
        registry.promote(conn, a["version"], "first")
        row, replaced = registry.promote(conn, b["version"], "better")
        assert row["status"] == "promoted" and row["previous_id"] == a["id"] and replaced["id"] == a["id"]
        assert registry.get_by_id(conn, a["id"])["status"] == "retired"
    with pytest.raises(exc.IntegrityError), engine.begin() as conn:  # the partial unique index
        conn.execute(text("UPDATE model_versions SET status = 'promoted' WHERE id = :id"), {"id": a["id"]})
    with engine.begin() as conn:
        back, retired = registry.rollback(conn, "bad")
        assert back["id"] == a["id"] and back["status"] == "promoted" and retired["id"] == b["id"]
        assert registry.get_by_id(conn, b["id"])["status"] == "retired"
        with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
            registry.rollback(conn, "again")
        (tmp_path / b["version"] / "model.safetensors").write_bytes(b"tampered")
        with pytest.raises(registry.RegistryError, match="changed since registration"):
            registry.promote(conn, b["version"], "tampered")
        conn.execute(text("UPDATE model_versions SET status = 'retired' WHERE id = :id"), {"id": a["id"]})


def test_queue_claims_once_recovers_stale_jobs_and_finishes_only_for_its_runner(migrated, tmp_path):
    _url, _lane, engine = migrated
    with engine.begin() as conn:
        base = _version(conn, tmp_path, f"base-{tmp_path.name[-6:]}")
        job = jobs.create(conn, {"labels": ["a", "b"]}, "test", base["id"])
        assert job["status"] == "queued" and job["base_version"] == base["version"]
    with engine.begin() as conn:
        assert jobs.claim(conn, "r1")["id"] == job["id"]
        assert jobs.claim(conn, "r2") is None  # nothing else queued: r2 never gets r1's job
        assert jobs.report(conn, job["id"], "r1", stage="assemble", percent=5, line="step") == "ok"
        assert jobs.report(conn, job["id"], "r2") == "lost"
    time.sleep(1.1)
    with engine.begin() as conn:
        assert jobs.recover_stale(conn, 1.0, max_attempts=2) == [(job["id"], "requeued")]
        assert jobs.report(conn, job["id"], "r1") == "lost"  # r1 lost it
        assert jobs.claim(conn, "r2")["attempts"] == 2
        assert not jobs.finish(conn, job["id"], "r1", "succeeded")
        assert jobs.finish(conn, job["id"], "r2", "failed", error="refused: too few", line="refused")
        done = jobs.get(conn, job["id"])
        assert done["status"] == "failed" and done["error"] == "refused: too few" and done["log"][-1] == "refused"
        assert any("stopped heartbeating" in line for line in done["log"])
        with pytest.raises(jobs.JobError, match="already failed"):
            jobs.cancel(conn, job["id"], "test")


def test_concurrent_runners_never_take_the_same_job(migrated, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from storage.lane import Lane, open_engine

    url, lane, engine = migrated
    if lane is Lane.TIMESCALEDB:
        pytest.skip("PGlite serves one connection at a time: there are no concurrent claims to race")
    with engine.begin() as conn:
        base = _version(conn, tmp_path, f"base-{tmp_path.name[-6:]}")
        made = {jobs.create(conn, {}, "test", base["id"])["id"] for _ in range(12)}
    pooled = open_engine(url)

    def drain(name: str) -> list[int]:
        taken = []
        while True:
            with pooled.begin() as conn:
                job = jobs.claim(conn, name)
                time.sleep(0.01)  # hold the row lock a moment, so the other runner really races
            if job is None:
                return taken
            taken.append(job["id"])

    with ThreadPoolExecutor(4) as pool:
        taken = list(pool.map(drain, ["r1", "r2", "r3", "r4"]))
    pooled.dispose()
    claimed = [j for t in taken for j in t if j in made]
    assert sorted(claimed) == sorted(made)  # every job once, none twice
