"""Services the local stack does not run (one compose host, a Kubernetes cluster) get the same users,
topics, ACLs, roles and schema as `iotlm stack up` gives its own, from the same code.

    iotlm stack secrets --out DIR    # offline: every password (generated once) and the files derived from them
    iotlm stack provision            # online, as the admin principals: Kafka users, topics, ACLs;
                                     # PostgreSQL roles, extension, schema and grants; Redis ACL reload

`secrets` writes, all 0600 in 0700 folders:

    DIR/secrets/<service>.json        every principal's password (IOTLM_SECURITY__SECRETS_DIR of the provisioner)
    DIR/components/<component>.json   only what one component needs, as IOTLM_SECURITY__PASSWORDS takes it
    DIR/redis/users.acl               Redis's users file (hashes only)
    DIR/mosquitto/passwd, acl         Mosquitto's accounts (service accounts; devices come from the registry)
    DIR/kafka/server.properties       a one-node broker for the compose file (SASL_PLAINTEXT inside its network)
    DIR/kafka/scram-admin             the admin user, bootstrapped at format time (`--add-scram`)
    DIR/postgres/superuser            the superuser's password (POSTGRES_PASSWORD_FILE of a postgres image)
    DIR/grafana/db-password           the reader role's password (Grafana's data source)
    DIR/grafana/admin-password        Grafana's own admin

`owners` (service folder -> uid) hands a folder and its files to the uid a container image runs its
server as (the services' images drop root before they read them).

Each component gets only its own passwords (least privilege): a worker's pod cannot act as the API.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from iotlm.credentials import (KAFKA_CONTROLLER, KAFKA_PRINCIPALS, MQTT_BRIDGE, POSTGRES_PRINCIPALS,
                               POSTGRES_SUPERUSER, REDIS_USERS, ensure_secrets, password, write_owner_only)
from iotlm.settings import Settings

KAFKA_DATA_DIR = "/var/lib/kafka/data"  # in the apache/kafka container of deploy/compose.yaml

# component -> the "<service>.<principal>" passwords its process reads (iotlm.credentials)
COMPONENT_PASSWORDS: dict[str, tuple[str, ...]] = {
    "worker": ("kafka.worker", "redis.worker", "postgres.worker"),
    "api": ("kafka.api", "redis.api", "postgres.api"),
    # the MQTT bridge: publishes as ingest, reads the registry as the reader role, subscribes as the bridge
    "bridge": ("kafka.ingest", "postgres.reader", f"mqtt.{MQTT_BRIDGE}"),
    # fine-tune job runners act as the API (finetune/runner.py): registry rows, the promotion key
    "jobs": ("redis.api", "postgres.api"),
}


def all_passwords(settings: Settings) -> dict[str, dict[str, str]]:
    """Every service's passwords by principal, generating (once) the missing ones in the secrets folder."""
    from deploy.mqtt_accounts import SERVICE_ACCOUNTS

    return {
        "kafka": ensure_secrets(settings, "kafka", (*KAFKA_PRINCIPALS, KAFKA_CONTROLLER)),
        "postgres": ensure_secrets(settings, "postgres", (POSTGRES_SUPERUSER, *POSTGRES_PRINCIPALS)),
        "redis": ensure_secrets(settings, "redis", REDIS_USERS),
        "mqtt": ensure_secrets(settings, "mqtt", SERVICE_ACCOUNTS),
    }


def write_secrets(settings: Settings, out: Path, owners: dict[str, int] | None = None) -> list[Path]:
    """The files of this module's docstring under `out`; returns them. Passwords already in
    `out/secrets` are kept, so running it again changes nothing (rotation: edit that file, run again)."""
    from deploy import mqtt_accounts
    from deploy.services import kafka_server_properties, redis_acl_text
    from iotlm.credentials import KAFKA_MECHANISM

    out = Path(out)
    settings = settings.model_copy(update={"security": settings.security.model_copy(
        update={"secrets_dir": str(out / "secrets")})})
    passwords = all_passwords(settings)
    written = [out / "secrets" / f"{service}.json" for service in passwords]
    for sub in ("components", "redis", "mosquitto", "kafka", "postgres", "grafana"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        (out / sub).chmod(0o700)
    for component, keys in COMPONENT_PASSWORDS.items():
        path = out / "components" / f"{component}.json"
        write_owner_only(path, json.dumps({key: password(settings, *key.split(".", 1)) for key in keys}))
        written.append(path)
    write_owner_only(out / "redis" / "users.acl", redis_acl_text(settings))
    mqtt_accounts.write_accounts(settings, {}, home=out / "mosquitto")
    s = settings.stack
    write_owner_only(out / "kafka" / "server.properties", kafka_server_properties(
        passwords["kafka"], bind_host="0.0.0.0", advertised_host=s.host_of("kafka"), port=s.kafka_port,
        controller_port=s.kafka_controller_port, data_dir=KAFKA_DATA_DIR, tls=None))
    write_owner_only(out / "kafka" / "scram-admin",
                     f"{KAFKA_MECHANISM}=[name=admin,password={passwords['kafka']['admin']}]")
    write_owner_only(out / "postgres" / "superuser", passwords["postgres"][POSTGRES_SUPERUSER])
    write_owner_only(out / "grafana" / "db-password", passwords["postgres"]["reader"])
    write_owner_only(out / "grafana" / "admin-password", ensure_secrets(settings, "grafana", ("admin",))["admin"])
    for service, uid in (owners or {}).items():
        folder = out / service
        if not folder.is_dir() or service in ("secrets", "components"):
            raise ValueError(f"no service folder {service!r} to hand over (known: kafka, redis, mosquitto, "
                             "postgres, grafana)")
        for path in (folder, *folder.iterdir()):
            os.chown(path, uid, uid)
    written += [out / "redis" / "users.acl", out / "mosquitto" / "passwd", out / "mosquitto" / "acl",
                out / "kafka" / "server.properties", out / "kafka" / "scram-admin", out / "postgres" / "superuser",
                out / "grafana" / "db-password", out / "grafana" / "admin-password"]
    return written


def provision(settings: Settings, progress=lambda step: None) -> dict:
    """Make the configured services ready for every component; idempotent. Needs the admin
    principals' passwords (kafka.admin, postgres.postgres, postgres.owner, redis.admin)."""
    from deploy.services import PostgresServer
    from deploy.topics import ensure_topics, ensure_users
    from iotlm.credentials import redis_client
    from storage.lane import url_from_settings
    from storage.migrate import upgrade

    progress("Kafka users")
    ensure_users(settings)
    progress("Kafka topics and ACLs")
    created = ensure_topics(settings)
    progress("PostgreSQL roles and database")
    postgres = PostgresServer(settings)
    postgres.ensure_roles()
    timescaledb = postgres.ensure_timescaledb()
    progress("schema migrations and grants")
    lane = upgrade(url_from_settings(settings, "postgresql"))
    progress("Redis users")
    client = redis_client(settings, "admin", socket_timeout=10)
    try:
        acl_loaded = _acl_load(client)
    finally:
        client.close()
    return {"topics_created": created, "timescaledb_extension": timescaledb, "lane": lane.value,
            "redis_acl_loaded": acl_loaded}


def _acl_load(client) -> bool:
    """Redis re-reads its users file; False where the server runs without one (users set otherwise)."""
    from redis.exceptions import ResponseError

    try:
        client.execute_command("ACL", "LOAD")
    except ResponseError as exc:
        if "aclfile" not in str(exc).lower():
            raise
        return False
    return True
