"""The one place that knows each component's service credentials and turns them into client arguments.

Every service of the stack authenticates its clients, one principal per component:

    kafka:  admin (topics, users, ACLs: `iotlm stack` and test set-up), ingest (gate, MQTT bridge, replay),
            worker (stream workers), api (admin API and its jobs), controller (KRaft's own listener)
    redis:  admin (server administration), worker (live state, alerts; reads the promoted model),
            api (sets the promoted model, follows the alert stream), dashboards (read only)
    postgres: postgres (the cluster's superuser: `iotlm stack` only), owner (settings.stack.postgres_user:
            owns the schema, runs migrations, creates databases), worker (role iotlm_worker: INSERT/UPDATE
            on the result tables), api (iotlm_api), reader (iotlm_reader: SELECT, for dashboards and Grafana)

Passwords come from `settings.security.passwords["<service>.<principal>"]` (the environment:
`IOTLM_SECURITY__PASSWORDS`) or else from `{secrets_dir}/<service>.json`, which `iotlm stack up`
writes once with fresh random passwords (folder 0700, files 0600). Nothing has a default password.

    KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "ingest"))
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from iotlm.settings import Settings

KAFKA_MECHANISM = "SCRAM-SHA-512"
KAFKA_PRINCIPALS = ("admin", "ingest", "worker", "api")
KAFKA_CONTROLLER = "controller"  # KRaft's controller listener speaks SASL/PLAIN: SCRAM lives in the metadata it serves
REDIS_USERS = ("admin", "worker", "api", "dashboards")
MQTT_BRIDGE, MQTT_HEALTH = "iotlm-bridge", "iotlm-health"  # Mosquitto service accounts (deploy/mqtt_accounts.py)
POSTGRES_SUPERUSER = "postgres"
POSTGRES_PRINCIPALS = ("owner", "worker", "api", "reader")


class MissingCredentials(RuntimeError):
    """A component asked for a password that neither the environment nor the secrets folder holds."""


def secrets_dir(settings: Settings) -> Path:
    return Path(settings.security.secrets_dir) if settings.security.secrets_dir else settings.state_dir / "secrets"


def _secrets_file(settings: Settings, service: str) -> Path:
    return secrets_dir(settings) / f"{service}.json"


def write_owner_only(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, also when the file was there before with another mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def ensure_secrets(settings: Settings, service: str, principals: Iterable[str]) -> dict[str, str]:
    """The service's passwords by principal, generating (and saving) any that are missing. Only
    `iotlm stack up` calls this: clients never invent a password the server does not know."""
    folder = secrets_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = _secrets_file(settings, service)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two `stack up`s at once must not each write their own passwords
        known = json.loads(path.read_text()) if path.exists() else {}
        missing = [p for p in principals if p not in known]
        if missing:
            known |= {p: secrets.token_urlsafe(24) for p in missing}
            tmp = path.with_suffix(".tmp")
            write_owner_only(tmp, json.dumps(known, indent=1))
            os.replace(tmp, path)
    return known


def password(settings: Settings, service: str, principal: str) -> str:
    """The password of `principal` on `service`: the environment's, else the secrets folder's."""
    override = settings.security.passwords.get(f"{service}.{principal}")
    if override:
        return override
    path = _secrets_file(settings, service)
    try:
        value = json.loads(path.read_text()).get(principal)
    except FileNotFoundError:
        value = None
    if not value:
        raise MissingCredentials(
            f"no {service} password for {principal!r}: set IOTLM_SECURITY__PASSWORDS='{{\"{service}.{principal}\": ...}}' "
            f"or run `iotlm stack up` with state dir {settings.state_dir} (it writes {path})"
        )
    return value


def kafka_client_kwargs(settings: Settings, principal: str, *, tls: bool = False) -> dict:
    """SASL/SCRAM keyword arguments for kafka-python and aiokafka clients (they share the names).
    `tls`: for kafka-python on the SASL_SSL listener (`kafka_tls_bootstrap`), trusting the stack's CA;
    aiokafka and Faust take `ssl_context=aiokafka.helpers.create_ssl_context(cafile=tls_ca(settings))`."""
    kwargs = {
        "security_protocol": "SASL_SSL" if tls else "SASL_PLAINTEXT",
        "sasl_mechanism": KAFKA_MECHANISM,
        "sasl_plain_username": principal,
        "sasl_plain_password": password(settings, "kafka", principal),
    }
    if tls:
        kwargs["ssl_cafile"] = str(tls_ca(settings))
    return kwargs


def kafka_tls_bootstrap(settings: Settings) -> str:
    return f"{settings.stack.host_of('kafka')}:{settings.stack.kafka_tls_port}"


def tls_ca(settings: Settings) -> Path:
    """The certificate of the local stack's own CA (`iotlm stack up` makes it; deploy.services.ensure_tls)."""
    return settings.state_dir / "tls" / "ca.pem"


def faust_credentials(settings: Settings, principal: str = "worker"):
    """The same principal for a faust.App (`broker_credentials=`)."""
    import faust

    return faust.SASLCredentials(username=principal, password=password(settings, "kafka", principal),
                                 mechanism=KAFKA_MECHANISM)


def kafka_tool_config(settings: Settings, principal: str = "admin") -> Path:
    """A client properties file (0600, in the secrets folder) for Kafka's Java tools
    (`--command-config`, `--consumer.config`)."""
    secret = password(settings, "kafka", principal)
    path = secrets_dir(settings) / f"kafka-{principal}.properties"
    write_owner_only(path, (
        "security.protocol=SASL_PLAINTEXT\n"
        f"sasl.mechanism={KAFKA_MECHANISM}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{principal}" password="{secret}";\n'
    ))
    return path


def redis_auth(settings: Settings, principal: str) -> dict:
    """`username`/`password` keyword arguments of redis-py clients (sync and asyncio, `from_url` too)."""
    return {"username": principal, "password": password(settings, "redis", principal)}


def redis_client(settings: Settings, principal: str, **kwargs):
    """A redis-py client of the stack's Redis as `principal` (text replies unless told otherwise)."""
    from redis import Redis

    kwargs.setdefault("decode_responses", True)
    return Redis(host=settings.stack.host_of("redis"), port=settings.stack.redis_port, db=0, **redis_auth(settings, principal),
                 **kwargs)


def postgres_role(settings: Settings, principal: str) -> str:
    """The PostgreSQL role of a principal: the owner is `settings.stack.postgres_user`, the others
    fixed names that migrations grant to (storage.migrate)."""
    if principal == "owner":
        return settings.stack.postgres_user
    if principal == POSTGRES_SUPERUSER:
        return POSTGRES_SUPERUSER
    return f"iotlm_{principal}"


def postgres_connect_kwargs(settings: Settings, principal: str = "owner", dbname: str | None = None) -> dict:
    """psycopg.connect(**...) keyword arguments: the stack's server, as `principal`."""
    s = settings.stack
    return {"host": s.host_of("postgres"), "port": s.postgres_port, "user": postgres_role(settings, principal),
            "password": password(settings, "postgres", principal), "dbname": dbname or s.postgres_db}


def database_url(settings: Settings, principal: str = "owner", *, with_password: bool = True) -> str:
    """SQLAlchemy URL of the stack's PostgreSQL database as `principal` (no password: for files that
    reference it from elsewhere, e.g. Grafana's provisioning)."""
    from urllib.parse import quote

    s = settings.stack
    secret = f":{quote(password(settings, 'postgres', principal), safe='')}" if with_password else ""
    return f"postgresql+psycopg://{postgres_role(settings, principal)}{secret}@{s.host_of('postgres')}:{s.postgres_port}/{s.postgres_db}"


def postgres_password(settings: Settings, principal: str = "owner") -> str:
    return password(settings, "postgres", principal)


def mosquitto_digest(secret: str, salt: bytes | None = None, iterations: int = 1000) -> str:
    """Mosquitto's password-file hash: `$7$<iterations>$<salt b64>$<PBKDF2-HMAC-SHA512 b64>`."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    derived = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(derived).decode()}"
