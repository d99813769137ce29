"""Mosquitto's accounts and ACLs: the service accounts of the stack plus one per device with credentials.

Files (in `{state_dir}/mosquitto/`, 0600): `passwd` (Mosquitto's `$7$` PBKDF2-SHA512 hashes: the
same hash the admin API stores for each device secret, admin.security.device_digest) and `acl`:

    user iotlm-bridge            the MQTT bridge: reads every device topic
    topic read <base>/#
    pattern write <base>/%u      every client: publish on its own topic only; no subscription at all

`sync_registry` rewrites both from the registry's active devices and sends Mosquitto SIGHUP, which
re-reads them without a restart: a deactivated device (or a replaced secret) is refused from its next
connection on. The admin API calls it after every device change (admin.deps.fleet_changed).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path

from iotlm.credentials import MQTT_BRIDGE as BRIDGE
from iotlm.credentials import MQTT_HEALTH as HEALTH  # `iotlm stack status`: connects, publishes nothing
from iotlm.credentials import ensure_secrets, mosquitto_digest, password, write_owner_only
from iotlm.settings import Settings

SERVICE_ACCOUNTS = (BRIDGE, HEALTH)


def folder(settings: Settings) -> Path:
    """`{state_dir}/mosquitto`, or a private temp folder when the broker's OS user cannot reach the
    state dir (a clone under /root, mode 0700), as for PostgreSQL's data."""
    import hashlib
    import tempfile

    from deploy.services import _reachable_by

    home = settings.state_dir / "mosquitto"
    user = _broker_user()
    if user is None or _reachable_by(home.parent, user.pw_name):
        return home
    private = Path(tempfile.gettempdir()) / f"iotlm-mosquitto-{hashlib.sha256(str(home).encode()).hexdigest()[:12]}"
    private.mkdir(mode=0o700, exist_ok=True)
    os.chown(private, user.pw_uid, user.pw_gid)
    return private


def topic_base(settings: Settings) -> str:
    return settings.ingest.mqtt_topic.removesuffix("#").rstrip("/")


def write_accounts(settings: Settings, devices: Mapping[str, str], home: Path | None = None) -> None:
    """Both files: the service accounts (passwords from the secrets) and `devices` (id -> `$7$` hash),
    in `home` (default: the local broker's folder, files owned by its OS user)."""
    ensure_secrets(settings, "mqtt", SERVICE_ACCOUNTS)
    broker_user = _broker_user() if home is None else None  # elsewhere: a container's broker, its own uid
    home = home or folder(settings)
    home.mkdir(parents=True, exist_ok=True)
    lines = [f"{name}:{mosquitto_digest(password(settings, 'mqtt', name))}" for name in SERVICE_ACCOUNTS]
    # ':' ends a user name in the file; such an id could never log in anyway
    lines += [f"{device}:{digest}" for device, digest in sorted(devices.items())
              if ":" not in device and digest.startswith("$7$")]
    base = topic_base(settings)
    acl = [f"user {BRIDGE}", f"topic read {base}/#", "", f"pattern write {base}/%u"]
    for name, text in (("passwd", lines), ("acl", acl)):
        path = home / name
        tmp = path.with_suffix(".tmp")
        write_owner_only(tmp, "\n".join(text) + "\n")
        if broker_user is not None:
            os.chown(tmp, broker_user.pw_uid, broker_user.pw_gid)
        os.replace(tmp, path)


def _broker_user():
    """Started as root, Mosquitto drops to its own OS user before it reads these files: theirs, 0600."""
    import pwd

    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        return None


def devices_in_file(settings: Settings) -> dict[str, str]:
    """The device accounts the password file holds now (kept across a broker restart)."""
    path = folder(settings) / "passwd"
    if not path.exists():
        return {}
    rows = (line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    return {name: digest for name, digest in rows if name not in SERVICE_ACCOUNTS}


def reload(settings: Settings) -> bool:
    """SIGHUP to the stack's Mosquitto (by its PID file, never a stranger); False when none runs."""
    from deploy.process import DetachedProcess

    process = DetachedProcess(pid_file=settings.state_dir / "run" / "mosquitto.pid",
                              log_file=settings.state_dir / "logs" / "mosquitto.log").running()
    if process is None:
        return False
    os.kill(process.pid, signal.SIGHUP)
    return True


def sync_registry(settings: Settings, conn) -> int:
    """Device accounts from the registry (active devices with issued credentials), then reload.
    Where no local broker was ever set up (no password file), nothing is written. Returns the count."""
    from sqlalchemy import text

    if not (folder(settings) / "passwd").exists():
        return 0
    rows = conn.execute(text("SELECT id, credentials_hash FROM devices "
                             "WHERE deactivated_at IS NULL AND credentials_hash LIKE '$7$%'")).all()
    write_accounts(settings, {device: digest for device, digest in rows})
    reload(settings)
    return len(rows)
