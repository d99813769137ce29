"""The CLI counterparts against the running API: keys on the database, devices/labels/alarms through the API
with IOTLM_API_KEY, `--json` everywhere; `iotlm ingest send` refusing an unregistered device via the registry."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def env(api, settings_env):
    s = api.settings
    return settings_env | s.stack.environ() | {
        "IOTLM_API__URL": api.url, "IOTLM_STORAGE__REDIS_KEY_PREFIX": s.storage.redis_key_prefix,
        **{f"IOTLM_KAFKA__{k.upper()}": v for k, v in s.kafka.model_dump().items() if k.endswith("_topic")},
    }


def iotlm(env, *args, key: str | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    extra = {"IOTLM_API_KEY": key} if key else {}
    return subprocess.run([sys.executable, "-m", "iotlm", *args], env=env | extra, capture_output=True,
                          timeout=120, input=input)


def test_keys_devices_labels_alarms_from_the_command_line(api, env, tmp_path):
    made = iotlm(env, "keys", "create", "--scope", "admin", "--name", "ops laptop", "--expires-days", "30", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["key"].startswith("iotlm_") and key["scopes"] == ["admin"] and key["expires_at"]

    register = iotlm(env, "devices", "register", "dev-cli", "--placement", "wrist", "--owner", "ward 2", "--json",
                     key=key["key"])
    assert register.returncode == 0, register.stderr
    assert json.loads(register.stdout)["owner"] == "ward 2"
    listed = json.loads(iotlm(env, "devices", "list", "--active", "--json", key=key["key"]).stdout)
    assert [d["id"] for d in listed] == ["dev-cli"]
    secret = json.loads(iotlm(env, "devices", "credentials", "dev-cli", "--json", key=key["key"]).stdout)["secret"]
    assert len(secret) >= 40

    labels = tmp_path / "labels.csv"
    labels.write_text("device_id,starts_at,ends_at,label\n"
                      "dev-cli,2026-11-30T08:00:00Z,2026-11-30T08:05:00Z,walking\n"
                      "dev-cli,2026-11-30T08:04:00Z,2026-11-30T08:06:00Z,sitting\n")
    refused = iotlm(env, "labels", "import", str(labels), "--json", key=key["key"])
    assert refused.returncode == 1 and b"overlaps label" in refused.stderr
    labels.write_text("device_id,starts_at,ends_at,label\ndev-cli,2026-11-30T08:00:00Z,2026-11-30T08:05:00Z,walking\n")
    stored = iotlm(env, "labels", "import", str(labels), "--json", key=key["key"])
    assert stored.returncode == 0 and json.loads(stored.stdout)["created"] == 1
    assert json.loads(iotlm(env, "alarms", "list", "--json", key=key["key"]).stdout) == []
    missing = iotlm(env, "alarms", "ack", "424242", "--json", key=key["key"])
    assert missing.returncode == 1 and b"404 no alarm 424242" in missing.stderr

    keys = json.loads(iotlm(env, "keys", "list", "--json").stdout)
    assert next(k for k in keys if k["id"] == key["id"])["last_used_at"] is not None
    assert all("key" not in k and "key_hash" not in k for k in keys)
    assert iotlm(env, "keys", "revoke", str(key["id"]), "--json").returncode == 0
    after = iotlm(env, "devices", "list", "--json", key=key["key"])
    assert after.returncode == 1 and b"401" in after.stderr and b"revoked" in after.stderr
    no_key = iotlm(env, "devices", "list")
    assert no_key.returncode == 2 and b"IOTLM_API_KEY" in no_key.stderr


def test_ingest_send_with_registry_admission_refuses_an_unregistered_device(api, env, live):
    from ingest.codec import encode

    frame = encode(live.frames("dev-unknown-cli", 1, time.time() - 60)[0], "json")
    registry = env | {"IOTLM_INGEST__ADMISSION": "registry"}
    refused = iotlm(registry, "ingest", "send", "-", "--json", input=frame)
    assert refused.returncode == 2, refused.stderr
    decision = json.loads(refused.stdout)
    assert (decision["accepted"], decision["code"]) == (False, "unknown_device")
    assert "not in the registry" in decision["reason"]
    # the same device by settings (the dev- prefix is allowed there): admitted
    assert iotlm(env, "ingest", "send", "-", "--json", input=frame).returncode == 0
