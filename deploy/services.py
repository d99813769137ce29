"""The local services, one class each: how to prepare, launch and health-check them.

Each service keeps its data under ``{state_dir}/<name>/``, its log in ``{state_dir}/logs/<name>.log``
and its PID file in ``{state_dir}/run/<name>.pid``. Health is always a real protocol exchange
(Kafka metadata, ``SELECT 1``, ``PING``, an MQTT CONNACK), never just an open port.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

from deploy.process import DetachedProcess, log_tail
from iotlm.credentials import write_owner_only
from iotlm.settings import PROJECT_ROOT, Settings

DEPLOY_DIR = PROJECT_ROOT / "deploy"
KAFKA_DIR = DEPLOY_DIR / "kafka"
PGLITE_DIR = DEPLOY_DIR / "pglite"
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
HEALTH_TIMEOUT_S = 3.0


class StackError(RuntimeError):
    """A service could not be prepared, started or stopped; the message says why and what to do."""


class ServiceBusy(StackError):
    """The service accepted the connection but serves someone else first (PGlite: one client at a
    time). It is up; the health check just could not get its turn."""


class Service(ABC):
    """One local service process of the stack."""

    name: str
    stop_signal: signal.Signals = signal.SIGTERM
    stop_grace_s: float = 15.0
    run_as: str | None = None  # OS user the process runs as; None keeps ours

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host = settings.stack.host
        self.home = settings.state_dir / self.name
        self.process = DetachedProcess(
            pid_file=settings.state_dir / "run" / f"{self.name}.pid",
            log_file=settings.state_dir / "logs" / f"{self.name}.log",
        )

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def prepare(self) -> None:
        """Create folders, config files and first-run data; safe to call before every start."""
        self.home.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def argv(self) -> list[str]:
        """The command line of the long-running server process."""

    @abstractmethod
    def check(self) -> str:
        """Talk the service's protocol once; return a short detail, raise on any failure."""

    @property
    def workdir(self) -> Path:
        """Current directory of the service's processes."""
        return self.home

    def launch(self) -> None:
        self.process.start(self.argv(), address=(self.host, self.port), cwd=self.workdir, user=self.run_as)

    def _run_step(self, argv: list[str], what: str, stdin: str | None = None, secret: str | None = None) -> None:
        """Run a one-off setup command (format, initdb), its output appended to the service log
        (`secret`, a password on the command line, is masked there)."""
        self.process.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.process.log_file.open("ab") as log:
            shown = " ".join(argv).replace(secret, "***") if secret else " ".join(argv)
            log.write(f"\n==== {what}: {shown}\n".encode())
            log.flush()
            feed = {"input": stdin.encode()} if stdin else {"stdin": subprocess.DEVNULL}
            result = subprocess.run(
                argv, **feed, stdout=log, stderr=subprocess.STDOUT, user=self.run_as, cwd=self.workdir, check=False,
            )
        if result.returncode != 0:
            raise StackError(
                f"{self.name}: {what} failed (exit {result.returncode}); "
                f"last lines of {self.process.log_file}:\n{log_tail(self.process.log_file)}"
            )


class KafkaBroker(Service):
    """Kafka 4 in KRaft mode: one node that is both broker and controller, jars from Maven Central."""

    name = "kafka"
    stop_grace_s = 30.0  # a controlled shutdown flushes logs and resigns leadership first

    @property
    def port(self) -> int:
        return self.settings.stack.kafka_port

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    def prepare(self) -> None:
        super().prepare()
        if not (KAFKA_DIR / "lib" / ".complete").exists():
            raise StackError(f"kafka: jars missing in {KAFKA_DIR / 'lib'}; run scripts/setup.sh")
        from iotlm.credentials import KAFKA_CONTROLLER, KAFKA_MECHANISM, KAFKA_PRINCIPALS, ensure_secrets

        data = self.home / "data"
        s = self.settings.stack
        passwords = ensure_secrets(self.settings, "kafka", (*KAFKA_PRINCIPALS, KAFKA_CONTROLLER))
        admin = passwords["admin"]
        # Written on every start, so port changes in the settings apply to existing data. It holds the
        # controller and admin passwords: owner-only, like the secrets folder.
        write_owner_only(self.config_file, kafka_server_properties(
            passwords, bind_host=self.host, advertised_host=self.host, port=s.kafka_port,
            controller_port=s.kafka_controller_port, data_dir=data,
            tls=(s.kafka_tls_port, ensure_tls(self.settings, "kafka"))))
        # The admin user is bootstrapped into the metadata at format time (the broker knows no other way
        # in); the other users are upserted by `stack up` through it. Data formatted without it (before
        # authentication, or with another admin password) can never be administered: start it afresh.
        marker = data / ".iotlm-admin"
        fingerprint = hashlib.sha256(admin.encode()).hexdigest()
        if (data / "meta.properties").exists() and (not marker.exists() or marker.read_text() != fingerprint):
            self.process.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.process.log_file.open("a") as log:
                log.write(f"\n==== {data} has no admin user of ours: formatting it afresh (topics are recreated)\n")
            shutil.rmtree(data)
        if not (data / "meta.properties").exists():
            self._run_step(
                kafka_java_argv("kafka.tools.StorageTool")
                + ["format", "--cluster-id", _kafka_cluster_id(), "--config", str(self.config_file),
                   "--ignore-formatted", "--add-scram", f"{KAFKA_MECHANISM}=[name=admin,password={admin}]"],
                "format KRaft storage", secret=admin,
            )
            marker.write_text(fingerprint)

    def argv(self) -> list[str]:
        return kafka_java_argv("kafka.Kafka", heap=self.settings.stack.kafka_heap) + [str(self.config_file)]

    def check(self) -> str:
        from kafka import KafkaAdminClient

        from iotlm.credentials import kafka_client_kwargs

        admin = KafkaAdminClient(
            bootstrap_servers=self.address, client_id="iotlm-stack-health", **kafka_client_kwargs(self.settings, "admin"),
            request_timeout_ms=int(HEALTH_TIMEOUT_S * 1000), bootstrap_timeout_ms=int(HEALTH_TIMEOUT_S * 1000),
        )
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        return f"cluster {cluster['cluster_id']}, {len(cluster['brokers'])} broker(s)"


def kafka_server_properties(passwords: dict[str, str], *, bind_host: str, advertised_host: str, port: int,
                            controller_port: int, data_dir: Path | str, tls: tuple[int, Path] | None) -> str:
    """server.properties of a one-node KRaft broker with the project's security: SCRAM users over
    SASL_PLAINTEXT (and SASL_SSL on `tls` = (port, PEM keystore)), a PLAIN-only controller listener,
    deny-by-default ACLs. The local stack's broker and a deployment's (deploy/provision.py) share it."""
    from iotlm.credentials import KAFKA_CONTROLLER, KAFKA_MECHANISM

    admin, controller = passwords["admin"], passwords[KAFKA_CONTROLLER]
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    listeners = [f"SASL_PLAINTEXT://{bind_host}:{port}"] + ([f"SASL_SSL://{bind_host}:{tls[0]}"] if tls else [])
    advertised = [f"SASL_PLAINTEXT://{advertised_host}:{port}"] + ([f"SASL_SSL://{advertised_host}:{tls[0]}"] if tls else [])
    tls_lines = [
        # The same SCRAM users over TLS, as production runs it (deploy/README.md): a PEM key
        # and chain signed by the stack's own CA, which clients trust (credentials.kafka_client_kwargs).
        f"listener.name.sasl_ssl.{KAFKA_MECHANISM.lower()}.sasl.jaas.config={scram} required "
        f'username="admin" password="{admin}";',
        "listener.name.sasl_ssl.ssl.keystore.type=PEM",
        f"listener.name.sasl_ssl.ssl.keystore.location={tls[1]}",
    ] if tls else []
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{advertised_host}:{controller_port}",
            "listeners=" + ",".join([*listeners, f"CONTROLLER://{bind_host}:{controller_port}"]),
            "advertised.listeners=" + ",".join(advertised),
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=SASL_PLAINTEXT",
            "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            *tls_lines,
            # Clients: SCRAM-SHA-512 only, users in the cluster metadata (created by deploy.topics).
            f"sasl.enabled.mechanisms={KAFKA_MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={KAFKA_MECHANISM}",
            f"listener.name.sasl_plaintext.{KAFKA_MECHANISM.lower()}.sasl.jaas.config={scram} required "
            f'username="admin" password="{admin}";',
            # KRaft's controller cannot use SCRAM (its users live in the metadata it serves): PLAIN,
            # one user, so nobody else can talk to the controller port either.
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            f"listener.name.controller.plain.sasl.jaas.config={plain} required "
            f'username="{KAFKA_CONTROLLER}" password="{controller}" user_{KAFKA_CONTROLLER}="{controller}";',
            # Deny by default; each component's principal gets only its ACLs (deploy.topics).
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:admin;User:{KAFKA_CONTROLLER}",
            "allow.everyone.if.no.acl.found=false",
            f"log.dirs={data_dir}",
            # One node: every internal topic has a single replica.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            # Consumers in tests and demos join at once; no need to wait 3 s for more members.
            "group.initial.rebalance.delay.ms=0",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            "",
        ]
    )


def ensure_tls(settings: Settings, service: str) -> Path:
    """A PEM keystore (key, certificate, CA) for `service` on the stack's host, signed by the stack's
    own CA (`{state_dir}/tls/ca.pem`, made here once with openssl); returns the keystore's path."""
    folder = settings.state_dir / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    openssl = shutil.which("openssl") or "openssl"
    ca_key, ca = folder / "ca.key", folder / "ca.pem"

    def run(*args: str) -> None:
        result = subprocess.run([openssl, *args], capture_output=True, text=True, cwd=folder, check=False)
        if result.returncode != 0:
            raise StackError(f"tls: openssl {args[0]} failed: {result.stderr.strip()[-500:]}")

    if not ca.exists():
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "825",
            "-subj", "/CN=IoT-LM local stack CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    host = settings.stack.host
    keystore, made_for = folder / f"{service}-keystore.pem", folder / f"{service}.host"
    if not keystore.exists() or not made_for.exists() or made_for.read_text() != host:
        key, csr, cert, ext = (folder / f"{service}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
        kind = "IP" if host.replace(".", "").isdigit() or ":" in host else "DNS"
        ext.write_text(f"subjectAltName={kind}:{host},DNS:localhost\nextendedKeyUsage=serverAuth\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={host}")
        run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "825", "-extfile", str(ext))
        write_owner_only(keystore, key.read_text() + cert.read_text() + ca.read_text())
        for leftover in (key, csr, ext):
            leftover.unlink()
        made_for.write_text(host)
    return keystore


def kafka_java_argv(main_class: str, heap: str | None = None) -> list[str]:
    """`java ... main_class` on the Kafka jars, to which the caller appends arguments. Tests and
    tools use it for e.g. `org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server ...`."""
    java = shutil.which("java") or "/usr/bin/java"
    heap_flags = [f"-Xmx{heap}", f"-Xms{heap}"] if heap else ["-Xmx256m"]
    # The broker logs INFO to its log file; tools keep stdout for their output, warnings on stderr.
    log_config = KAFKA_DIR / ("log4j2.properties" if main_class == "kafka.Kafka" else "tools-log4j2.properties")
    return [
        java, *heap_flags, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp", f"{KAFKA_DIR / 'lib'}/*", main_class,
    ]


def _kafka_cluster_id() -> str:
    """A random Kafka Uuid in its base64url form, as `kafka-storage random-uuid` prints it."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that would read as a command-line flag
            return text


class PostgresServer(Service):
    """Debian's PostgreSQL 15, run as the unprivileged `postgres` OS user, password auth on TCP."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for every client to leave

    @property
    def port(self) -> int:
        return self.settings.stack.postgres_port

    @property
    def run_as(self) -> str | None:
        # PostgreSQL refuses to run as root; an ordinary user runs it as themselves.
        return "postgres" if os.geteuid() == 0 else None

    @property
    def data_root(self) -> Path:
        """Where the cluster lives: the state dir, or a private temp folder when the `postgres`
        user cannot reach the state dir (a clone under /root, mode 0700)."""
        if _reachable_by(self.home.parent, self.run_as):
            return self.home
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"iotlm-postgres-{digest}"

    @property
    def workdir(self) -> Path:
        return self.data_root

    def prepare(self) -> None:
        super().prepare()
        if not (POSTGRES_BIN / "postgres").exists():
            raise StackError(f"postgres: {POSTGRES_BIN}/postgres missing; run scripts/setup.sh (apt postgresql-15)")
        root = self.data_root
        owner = pwd.getpwnam(self.run_as) if self.run_as else pwd.getpwuid(os.geteuid())
        for folder in (root, root / "run"):
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, owner.pw_uid, owner.pw_gid)
            folder.chmod(0o700)
        if root != self.home:
            (self.home / "WHERE.txt").write_text(f"cluster data lives in {root} (postgres user cannot reach here)\n")
        from iotlm.credentials import POSTGRES_PRINCIPALS, POSTGRES_SUPERUSER, ensure_secrets

        passwords = ensure_secrets(self.settings, "postgres", (POSTGRES_SUPERUSER, *POSTGRES_PRINCIPALS))
        data = root / "data"
        # The superuser is made by initdb with our generated password; a cluster made before that (its
        # superuser was the project's role, with a default password) cannot be trusted: start afresh.
        marker = data / "iotlm-superuser"
        fingerprint = hashlib.sha256(passwords[POSTGRES_SUPERUSER].encode()).hexdigest()
        if (data / "PG_VERSION").exists() and (not marker.exists() or marker.read_text() != fingerprint):
            self.process.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.process.log_file.open("a") as log:
                log.write(f"\n==== {data} has no superuser of ours: initializing it afresh (databases are lost)\n")
            shutil.rmtree(data)
        if (data / "PG_VERSION").exists():
            return
        password_file = root / "initdb.pw"
        write_owner_only(password_file, passwords[POSTGRES_SUPERUSER] + "\n")
        os.chown(password_file, owner.pw_uid, owner.pw_gid)
        try:
            self._run_step(
                [str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", POSTGRES_SUPERUSER, f"--pwfile={password_file}",
                 "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C"],
                "initdb",
            )
        finally:
            password_file.unlink(missing_ok=True)
        marker.write_text(fingerprint)
        os.chown(marker, owner.pw_uid, owner.pw_gid)

    def ensure_roles(self) -> None:
        """The project's roles, none a superuser, with the passwords of the secrets (re-set on every
        `stack up`: rotation), and the database, owned by the schema owner. What each role may do on the
        tables is granted by the migrations' owner (storage.migrate.grant_roles)."""
        import psycopg
        from psycopg import sql

        from iotlm.credentials import POSTGRES_PRINCIPALS, postgres_connect_kwargs, postgres_password, postgres_role

        s = self.settings.stack
        with psycopg.connect(**postgres_connect_kwargs(self.settings, "postgres", dbname="postgres"),
                             connect_timeout=int(HEALTH_TIMEOUT_S), sslmode="disable", autocommit=True) as conn:
            for principal in POSTGRES_PRINCIPALS:
                role = sql.Identifier(postgres_role(self.settings, principal))
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                      (postgres_role(self.settings, principal),)).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
                # the owner creates databases (tests make private ones) and may end sessions on them
                extra = "CREATEDB" if principal == "owner" else "NOCREATEDB"
                conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                                     + extra + " PASSWORD {}").format(
                    role, sql.Literal(postgres_password(self.settings, principal))))
            conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(s.postgres_user)))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (s.postgres_db,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(s.postgres_db), sql.Identifier(s.postgres_user)))
            # nobody but the owner creates objects in the database's public schema (PostgreSQL 15's default)
            conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(sql.Identifier(s.postgres_db)))

    def ensure_timescaledb(self) -> bool:
        """CREATE EXTENSION timescaledb in the database where the server has it (a TimescaleDB image;
        not Debian's PostgreSQL): only a superuser may, and the migrations then pick the TimescaleDB
        lane. Returns whether the extension is there."""
        import psycopg

        from iotlm.credentials import postgres_connect_kwargs

        with psycopg.connect(**postgres_connect_kwargs(self.settings, "postgres"),
                             connect_timeout=int(HEALTH_TIMEOUT_S), sslmode="disable", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone():
                return False
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            return True

    def argv(self) -> list[str]:
        run_dir = self.data_root / "run"
        # A unix socket path is limited to 107 bytes; past that, TCP only.
        sockets = str(run_dir) if len(str(run_dir)) < 90 else ""
        return [
            str(POSTGRES_BIN / "postgres"), "-D", str(self.data_root / "data"), "-p", str(self.port),
            "-c", f"listen_addresses={self.host}", "-c", f"unix_socket_directories={sockets}",
            "-c", "logging_collector=off",
        ]

    def check(self) -> str:
        import psycopg

        from iotlm.credentials import postgres_connect_kwargs

        # as the superuser, on its own database: the project's roles and database come after (ensure_roles)
        with psycopg.connect(**postgres_connect_kwargs(self.settings, "postgres", dbname="postgres"),
                             connect_timeout=int(HEALTH_TIMEOUT_S), sslmode="disable") as conn:
            conn.execute("SELECT 1").fetchone()
            version = conn.info.server_version
            return f"PostgreSQL {version // 10000}.{version % 10000}"


def _reachable_by(path: Path, user: str | None) -> bool:
    """True when `user` may traverse every folder from / down to `path` (its nearest existing part)."""
    if user is None:
        return True
    account = pwd.getpwnam(user)
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    path = path.resolve()
    for folder in [*reversed(path.parents), path]:
        if not folder.exists():
            break
        st = folder.stat()
        if st.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def redis_acl_text(settings: Settings) -> str:
    """Redis's users file (password hashes only) from the secrets.

    Key rules go by key family, whatever the prefix (a test's private prefix gets the same rules):
    live state `*:device:*`, `*:room:*`, `*:occupancy:*`, the alert stream `*:alerts`, and the
    promoted-model key `*:model*` (settings.workers.model_key), which only `api` may write."""
    from iotlm.credentials import REDIS_USERS, ensure_secrets

    digest = {user: hashlib.sha256(pw.encode()).hexdigest()
              for user, pw in ensure_secrets(settings, "redis", REDIS_USERS).items()}
    state = "~*:device:* ~*:room:* ~*:occupancy:*"
    # the API reads live state; reading a room's occupancy also prunes members past their TTL
    state_read = "%R~*:device:* %R~*:room:* ~*:occupancy:*"
    no_admin = "+@all -@dangerous -@admin"  # no CONFIG, FLUSHALL, KEYS, DEBUG, ACL, SHUTDOWN...
    lines = [
        "user default off resetpass nopass resetkeys resetchannels -@all",  # nobody without a password
        f"user admin on #{digest['admin']} ~* &* +@all",
        f"user worker on #{digest['worker']} {state} ~*:alerts %R~*:model* resetchannels {no_admin}",
        f"user api on #{digest['api']} {state_read} ~*:alerts ~*:model* resetchannels {no_admin}",
        f"user dashboards on #{digest['dashboards']} %R~* resetchannels -@all +@read +@connection -@dangerous",
    ]
    return "\n".join(lines) + "\n"


class RedisServer(Service):
    name = "redis"

    @property
    def port(self) -> int:
        return self.settings.stack.redis_port

    @property
    def config_file(self) -> Path:
        return self.home / "redis.conf"

    @property
    def acl_file(self) -> Path:
        return self.home / "users.acl"

    def prepare(self) -> None:
        super().prepare()
        if not shutil.which("redis-server"):
            raise StackError("redis: redis-server not found; run scripts/setup.sh (apt redis-server)")
        self.write_acl()
        self.config_file.write_text(
            f"bind {self.host}\nport {self.port}\ndir {self.home}\ndaemonize no\nprotected-mode yes\n"
            f'logfile ""\nappendonly no\naclfile {self.acl_file}\n'
        )

    def write_acl(self) -> None:
        """The users file (password hashes only, 0600) from the secrets; `ACL LOAD` re-reads it live."""
        write_owner_only(self.acl_file, redis_acl_text(self.settings))

    def reload_acl(self) -> None:
        """Rewrite the users file and have the running server load it: rotation without a restart."""
        from iotlm.credentials import redis_client

        self.write_acl()
        client = redis_client(self.settings, "admin", socket_timeout=HEALTH_TIMEOUT_S)
        try:
            client.execute_command("ACL", "LOAD")
        finally:
            client.close()

    def argv(self) -> list[str]:
        return [shutil.which("redis-server") or "redis-server", str(self.config_file)]

    def check(self) -> str:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from iotlm.credentials import redis_auth

        # One try: redis-py's default retries would turn a health check into half a minute.
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=HEALTH_TIMEOUT_S,
                             socket_connect_timeout=HEALTH_TIMEOUT_S, retry=Retry(NoBackoff(), 0),
                             **redis_auth(self.settings, "admin"))
        try:
            if not client.ping():
                raise StackError("redis: PING got no PONG")
            return f"Redis {client.info('server')['redis_version']}"
        finally:
            client.close()


class MosquittoBroker(Service):
    name = "mosquitto"

    @property
    def port(self) -> int:
        return self.settings.stack.mqtt_port

    @property
    def config_file(self) -> Path:
        return self.home / "mosquitto.conf"

    def prepare(self) -> None:
        super().prepare()
        if not _mosquitto_binary():
            raise StackError("mosquitto: binary not found; run scripts/setup.sh (apt mosquitto)")
        from deploy import mqtt_accounts

        # Nobody without an account; each device publishes on its own topic only (deploy/mqtt_accounts.py).
        mqtt_accounts.write_accounts(self.settings, mqtt_accounts.devices_in_file(self.settings))
        home = mqtt_accounts.folder(self.settings)
        self.config_file.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous false\npassword_file {home / 'passwd'}\n"
            f"acl_file {home / 'acl'}\npersistence false\nlog_dest stdout\n"
        )

    def argv(self) -> list[str]:
        return [_mosquitto_binary() or "mosquitto", "-c", str(self.config_file)]

    def check(self) -> str:
        import paho.mqtt.client as mqtt

        connack: list[mqtt.ReasonCode] = []
        from deploy.mqtt_accounts import HEALTH
        from iotlm.credentials import password

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"iotlm-health-{uuid.uuid4().hex[:8]}")
        client.username_pw_set(HEALTH, password(self.settings, "mqtt", HEALTH))
        client.on_connect = lambda _c, _u, _f, reason, _p: connack.append(reason)
        client.connect(self.host, self.port, keepalive=5)
        try:
            for _ in range(int(HEALTH_TIMEOUT_S / 0.1)):
                client.loop(timeout=0.1)
                if connack:
                    break
        finally:
            client.disconnect()
        if not connack:
            raise StackError("mosquitto: no CONNACK")
        if connack[0].is_failure:
            raise StackError(f"mosquitto: CONNACK refused: {connack[0]}")
        return "MQTT CONNACK ok"


def _mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


class TimescaleLite(Service):
    """TimescaleDB compiled to WASM (PGlite) behind our wire-protocol server (pglite/server.mjs), one
    client at a time. Not part of the default stack; the Timescale storage lane asks for it."""

    name = "timescale"

    @property
    def port(self) -> int:
        return self.settings.stack.timescale_port

    def prepare(self) -> None:
        super().prepare()
        if not (PGLITE_DIR / "node_modules" / "@unni-craftsman" / "pglite").exists():
            raise StackError(f"timescale: {PGLITE_DIR / 'node_modules'} missing; run scripts/setup.sh (npm install)")

    def argv(self) -> list[str]:
        return [
            shutil.which("node") or "node", str(PGLITE_DIR / "server.mjs"),
            "--data-dir", str(self.home / "data"), "--host", self.host, "--port", str(self.port),
        ]

    def check(self) -> str:
        try:
            version = _pg_wire_scalar(
                self.host, self.port, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            )
        except TimeoutError as exc:
            raise ServiceBusy("busy: serving another client (PGlite takes one at a time)") from exc
        if version is None:
            raise StackError("timescale: extension timescaledb is not installed")
        return f"TimescaleDB {version} (PGlite)"


def _pg_wire_scalar(host: str, port: int, sql: str, timeout_s: float = HEALTH_TIMEOUT_S) -> str | None:
    """First column of the first row of `sql`, over the bare Postgres wire protocol (any password).

    The PGlite health check talks the protocol itself rather than through psycopg because a
    psycopg connect that times out keeps its socket open until garbage collection, and to a
    one-client server that socket is a client still waiting in line.
    """
    def message(kind: bytes, body: bytes) -> bytes:
        return kind + struct.pack("!I", len(body) + 4) + body

    def read_exact(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
        return data

    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        params = b"user\0postgres\0database\0postgres\0\0"
        sock.sendall(struct.pack("!II", len(params) + 8, 196608) + params)  # protocol 3.0
        value, query_sent = None, False
        while True:
            kind = read_exact(sock, 1)
            body = read_exact(sock, struct.unpack("!I", read_exact(sock, 4))[0] - 4)
            if kind == b"R":  # authentication: PGlite accepts any password
                (auth,) = struct.unpack("!I", body[:4])
                if auth == 3:  # cleartext
                    sock.sendall(message(b"p", b"any\0"))
                elif auth == 5:  # md5 with a 4-byte salt
                    inner = hashlib.md5(b"any" + b"postgres").hexdigest().encode()
                    sock.sendall(message(b"p", b"md5" + hashlib.md5(inner + body[4:8]).hexdigest().encode() + b"\0"))
                elif auth != 0:
                    raise StackError(f"unsupported authentication request {auth}")
            elif kind == b"E":
                raise StackError(f"server error: {body.decode(errors='replace')}")
            elif kind == b"D" and value is None:
                (length,) = struct.unpack("!i", body[2:6])
                value = body[6:6 + length].decode() if length >= 0 else None
            elif kind == b"Z":  # ReadyForQuery: after login, then after our query
                if query_sent:
                    sock.sendall(message(b"X", b""))
                    return value
                sock.sendall(message(b"Q", sql.encode() + b"\0"))
                query_sent = True


SERVICE_TYPES: dict[str, type[Service]] = {
    cls.name: cls for cls in (KafkaBroker, PostgresServer, RedisServer, MosquittoBroker, TimescaleLite)
}
DEFAULT_SERVICES: tuple[str, ...] = ("kafka", "postgres", "redis", "mosquitto")
