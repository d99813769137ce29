"""The one settings object shared by every part of IoT-LM.

Every setting is declared once, here, with a default that works on a developer machine and an
environment name: ``IOTLM_<SECTION>__<FIELD>`` (for example ``IOTLM_KAFKA__PARTITIONS=12``), or
``IOTLM_STATE_DIR`` for top-level fields. Parts receive the object (or their section) as an
argument; nothing reads the environment on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class StackSettings(BaseModel):
    """Where the local services listen. Non-default ports so a system service never collides.
    `iotlm stack up` (deploy/stack.py) starts them; `IOTLM_STACK__<FIELD>` overrides each."""

    host: str = "127.0.0.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093  # KRaft controller listener of the single node
    kafka_tls_port: int = 19094  # SASL_SSL listener, certificate from the stack's own CA ({state_dir}/tls)
    kafka_heap: str = "1G"  # JVM -Xmx/-Xms of the broker
    postgres_port: int = 15432
    postgres_user: str = "iotlm"  # the schema owner (not a superuser), created by `stack up`
    postgres_db: str = "iotlm"
    redis_port: int = 16379
    mqtt_port: int = 11883
    timescale_port: int = 15433  # PGlite TimescaleDB server; not started by default
    start_timeout_s: float = 120.0  # how long `up` waits for each service to become healthy
    # The local stack runs every service on `host`; a deployment names each one where it runs
    # (compose service names, cluster DNS). Empty: `host`.
    kafka_host: str = ""
    postgres_host: str = ""
    redis_host: str = ""
    mqtt_host: str = ""
    timescale_host: str = ""

    def host_of(self, service: str) -> str:
        """Where clients reach `service` (kafka, postgres, redis, mqtt, timescale)."""
        return getattr(self, f"{service}_host") or self.host

    def with_ports_moved(self, offset: int) -> StackSettings:
        """A copy with every port `offset` higher: a second stack that runs beside this one
        without sharing a port (the test session's, see tests/conftest.py)."""
        return self.model_copy(
            update={name: getattr(self, name) + offset for name in type(self).model_fields if name.endswith("_port")}
        )

    def environ(self) -> dict[str, str]:
        """`IOTLM_STACK__*` variables that give a child process these same addresses."""
        return {f"IOTLM_STACK__{name.upper()}": str(value) for name, value in self.model_dump().items()}


class KafkaSettings(BaseModel):
    """Topic names and sizes; the bootstrap address comes from the stack section."""

    frames_topic: str = "iotlm.frames"
    dlq_topic: str = "iotlm.frames.dlq"
    alerts_topic: str = "iotlm.alerts"
    control_topic: str = "iotlm.control"
    partitions: int = 6
    max_frame_bytes: int = 1_000_000
    dlq_keep_bytes: int = Field(
        65_536,
        description="A rejected payload larger than max_frame_bytes is kept in the DLQ as this many leading "
        "bytes plus its size and sha256 in headers, so one junk upload cannot bloat the broker.",
    )
    producer_linger_ms: int = Field(20, description="How long a producer waits to fill a batch.")
    producer_batch_bytes: int = Field(262_144, description="Producer batch size per partition.")


class IngestSettings(BaseModel):
    """Device admission, and the MQTT bridge."""

    admission: Literal["settings", "registry"] = Field(
        "registry",
        description="Who decides which devices may send (and, for the workers, their rooms, label sets and alert "
        "rules): 'registry' (the admin API's tables, hot-reloaded; register devices with `iotlm devices` or "
        "POST /v1/devices) or 'settings' (the fields below: a sandbox without a registry).",
    )
    registered_devices: list[str] = Field(
        default_factory=list,
        description="Device ids allowed in; empty list plus allow_prefixes decides admission.",
    )
    allow_prefixes: list[str] = Field(
        default_factory=lambda: ["hapt-", "sim-", "dev-", "room-"],
        description="Device ids starting with one of these are treated as registered.",
    )
    mqtt_topic: str = "iotlm/frames/#"
    mqtt_client_id: str = "iotlm-mqtt-bridge"
    mqtt_qos: int = Field(1, description="QoS of the bridge's subscription: 1 = at least once.")
    max_future_skew_s: float = Field(
        86_400.0, description="A frame whose t0 is further ahead of the gateway clock is rejected."
    )


class ModelSettings(BaseModel):
    """Which model to load and where checkpoints live."""

    checkpoint_dir: Path = PROJECT_ROOT / "models" / "checkpoints"
    default_model: str = "motion-v1"
    device: str = "auto"  # "auto" picks CUDA when present, else CPU


class StorageSettings(BaseModel):
    """Database and cache connection details beyond the stack's addresses."""

    raw_frame_retention_days: int = 30
    prediction_retention_days: int = 365
    alert_retention_days: int = 365
    raw_frame_compress_after_days: int = Field(
        1, description="TimescaleDB lane: raw-frame chunks older than this are compressed."
    )
    partition_days_ahead: int = Field(
        7, description="PostgreSQL lane: daily partitions created ahead of today by `iotlm db maintain`."
    )
    lane: str = Field(
        "postgresql",
        description="Which server the app stores into: 'postgresql' (database_url) or 'timescale' (timescale_url).",
    )
    timescale_single_connection: bool = Field(
        True, description="The local TimescaleDB is PGlite, which serves one connection at a time: no pool."
    )
    write_batch_rows: int = Field(5000, description="Rows per transaction in the writers.")
    timescale_max_statement_bytes: int = Field(
        32_000, description="TimescaleDB lane: INSERT statements are split to stay under PGlite's ~64 KiB message limit."
    )
    write_retry_initial_s: float = 0.1
    write_retry_max_s: float = 5.0
    write_retry_deadline_s: float = Field(
        120.0, description="A batch that still fails after this long is raised to the caller."
    )
    state_ttl_s: int = 600
    redis_timeout_s: float = Field(2.0, description="Connect and read timeout of Redis clients.")
    live_state_backlog: int = Field(
        10_000, description="Alerts a worker keeps for Redis while Redis is down (the database has them all).")
    redis_key_prefix: str = "iotlm"
    alert_stream_maxlen: int = Field(100_000, description="Approximate length the alert stream is trimmed to.")


class WorkerSettings(BaseModel):
    """Windowing, batching and alerting on the stream."""

    engine: str = Field(
        "faust", pattern="^(faust|aiokafka)$",
        description="Stream engine: a faust-streaming app (guarded commit and seek, per-device state in a "
        "Faust table) or the plain aiokafka consumer it replaced (faster; kept for comparison and as a "
        "fallback; per-device state per process), see docs/workers.md.")
    window_s: float = 2.56
    hop_s: float = 1.28
    lateness_s: float = 5.0
    batch_max: int = 256
    batch_wait_ms: float = 50.0
    torch_threads: int = Field(
        0, description="torch threads of a worker process (`iotlm worker`); 0: torch's default (one per core). "
        "With several workers on one machine, cores / workers: more threads than cores thrash.",
    )
    labels: list[str] = Field(
        default_factory=lambda: [
            "walking", "walking upstairs", "walking downstairs", "sitting", "standing", "lying",
        ]
    )
    metrics_port: int = 9108
    metrics_host: str = Field("127.0.0.1", description="Where /metrics (and Faust's /health) listen; 0.0.0.0 in a container.")
    max_gap_s: float = Field(0.1, description="A window holding a sample gap longer than this is not emitted.")
    consumer_group: str = "iotlm-workers"
    commit_interval_s: float = Field(1.0, description="How often durably written progress is committed.")
    max_pending_windows: int = Field(4096, description="Windows queued for inference before consuming pauses.")
    episode_min_windows: int = Field(2, description="Windows of a new activity needed to close an episode.")
    model_key: str = Field("iotlm:model:promoted", description="Redis key naming the promoted model.")
    model_poll_s: float = 2.0
    alert_cooldown_s: float = Field(300.0, description="The same alert for a device is raised once per this.")
    fall_freefall_g: float = 0.4
    fall_impact_g: float = 2.5
    no_movement_s: float = 900.0
    no_movement_std: float = Field(0.05, description="m/s^2: acceleration std below this is 'no movement'.")
    silent_device_s: float = 60.0
    quiet_release_s: float = Field(
        15.0, description="A device heard from no frame for this long (wall clock, or broker time on its "
        "partition) has its open windows decided and its buffered frames released, so commits move on.")
    clock_jump_s: float = Field(
        300.0, description="A frame this far ahead of both its device's stream and the broker's clock is held "
        "aside until the device's next frames tell a clock jump from one bad timestamp.")
    jump_confirm_frames: int = Field(3, description="Frames in a row on the new clock that confirm a clock jump.")
    max_windows_per_frame: int = Field(
        64, description="An IMU frame longer than this many hops is refused: one small frame must not make "
        "thousands of windows (64 hops of 1.28 s: 82 s).")
    flat_line_std: float = Field(1e-6, description="m/s^2: an axis this still over a window is a stuck sensor.")
    saturation_ms2: float = Field(156.0, description="|acc| at or above this (16 g) is a clipped sample.")
    saturation_fraction: float = 0.2
    device_rooms: dict[str, str] = Field(default_factory=dict, description="device id -> room.")
    room_hours: list[dict] = Field(
        default_factory=list,
        description='Allowed hours per activity and room: [{"room", "activity", "start_hour", "end_hour"}].',
    )
    # room alert rules (stream_workers/alerts.py, on room states); per room through admin alert rules
    room_open_hour: int = Field(0, ge=0, le=23, description="Occupied before this hour (UTC) raises room_occupied_hours "
                                "(0 and 24: open all day, the rule never fires until a room's rule sets hours).")
    room_close_hour: int = Field(24, ge=0, le=24, description="Occupied from this hour (UTC) on raises room_occupied_hours.")
    room_capacity: int = Field(0, ge=0, description="More people than this raises room_over_capacity (0: no capacity set, off).")
    room_co2_max_ppm: float = Field(1400.0, description="CO2 above this for room_co2_for_s raises room_co2.")
    room_co2_for_s: float = 1200.0
    room_temperature_min_c: float = 16.0
    room_temperature_max_c: float = 28.0
    room_temperature_for_s: float = Field(1800.0, description="Temperature out of band this long raises room_temperature.")
    # the narration stage (stream_workers/narration.py): the adapter-LLM describes closed episodes and room changes
    narration: bool = Field(False, description="Run the narration stage (loads the LLM, ~0.5 GB, ~20 s at start).")
    narration_queue: int = Field(64, ge=1, description="Items waiting for the LLM; more are dropped and counted.")
    narration_batch: int = Field(8, ge=1, description="Lines generated per LLM call.")
    room_stuck_s: float = Field(7200.0, description="CO2, temperature or humidity reading one value this long: "
                                "room_sensor_stuck (real sensors always wander by a resolution step).")


class GrafanaSettings(BaseModel):
    """What `iotlm grafana` writes into the data sources, dashboards and alert rules (deploy/grafana)."""

    database_host: str = Field("", description="host:port of the database as Grafana reaches it; empty: the stack's.")
    database_user: str = Field("", description="Grafana's database user; empty: the stack's reader role (SELECT only).")
    prometheus_url: str = Field("http://127.0.0.1:9090", description="The Prometheus that scrapes the workers.")
    alert_webhook_url: str = Field("http://127.0.0.1:9095/iotlm/alerts",
                                   description="Where Grafana's contact point posts firing alerts.")
    lag_alert_records: int = Field(10_000, description="Consumer lag (records) that alerts after five minutes.")
    folder: str = "IoT-LM"
    request_timeout_s: float = 10.0


class ApiSettings(BaseModel):
    """The admin API (`iotlm api`) and the CLI commands that call it."""

    host: str = "127.0.0.1"
    port: int = 8000
    url: str = Field("", description="Where the CLI finds the API; empty: http://{host}:{port}.")
    failed_auth_limit: int = Field(
        20, description="Failed key attempts one client may make per failed_auth_window_s before getting 429s."
    )
    failed_auth_window_s: float = 60.0
    registry_refresh_s: float = Field(
        30.0, description="The fleet registry (admission, rooms, label sets, rules) reloads at least this often; "
        "a change notice on the control topic reloads it at once.",
    )
    max_rows: int = Field(10_000, description="Most rows a list or history route returns (JSON or CSV) per request.")
    import_max_bytes: int = Field(64 * 1024 * 1024, description="Largest body POST /v1/frames:import takes.")
    alarm_keeper: bool = Field(True, description="The API process turns alerts (Redis alert stream) into alarms.")


class JobSettings(BaseModel):
    """Fine-tuning jobs (`iotlm jobs run`, finetune/): where versions' files go, how runners share the
    queue, when a job is refused, and the rule that promotes a candidate (docs/finetune.md)."""

    models_dir: str = Field("", description="Where fine-tuned versions' files are written; empty: {state_dir}/models. "
                            "Every worker must be able to read it (a shared volume in a deployment).")
    poll_s: float = Field(1.0, description="How often an idle runner looks for a queued job.")
    heartbeat_s: float = Field(2.0, description="How often a runner stamps the job it holds.")
    stale_after_s: float = Field(
        30.0, description="A running job whose heartbeat is older than this lost its runner: it is queued again "
        "(resumed from its first step) or, after max_attempts, failed with the reason.")
    max_attempts: int = Field(2, ge=1, description="Runs a job may start before a lost runner fails it.")
    min_windows_total: int = Field(60, description="Fewer labeled windows than this: the job is refused.")
    min_windows_per_class: int = Field(10, description="Fewer labeled windows of any class than this: refused.")
    min_heldout_windows: int = Field(20, description="A held-out set smaller than this cannot justify a promotion.")
    split: Literal["auto", "device", "time"] = Field(
        "auto", description="Train/validation/test split: by device, by time block, or 'auto' (by device when "
        "at least three devices are labeled, else by time block).")
    block_s: float = Field(60.0, description="Length of the time blocks of a time split.")
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-4
    seed: int = 0
    alpha: float = Field(0.05, description="Significance level of the one-sided exact McNemar test that decides "
                         "automatic promotion.")
    auto_promote: bool = True
    threads: int = Field(0, description="torch threads of a runner; 0: torch's default.")
    log_lines: int = Field(50, description="Lines of a job's log kept for GET /v1/jobs/{id}.")


class SecuritySettings(BaseModel):
    """Where each component's service credentials come from (iotlm/credentials.py reads them).

    `iotlm stack up` generates every password of the local stack once into `secrets_dir` (mode 0600);
    a deployment instead hands each process only its own through `passwords`."""

    secrets_dir: str = Field("", description="Folder of the generated credentials; empty: {state_dir}/secrets.")
    passwords: dict[str, str] = Field(
        default_factory=dict, repr=False,
        description='Passwords that win over the secrets folder, by "<service>.<principal>", e.g. '
        'IOTLM_SECURITY__PASSWORDS=\'{"kafka.worker": "..."}\'.',
    )


class Settings(BaseSettings):
    """All of IoT-LM's configuration. Build once at the edge (CLI, test fixture) and pass down."""

    model_config = SettingsConfigDict(env_prefix="IOTLM_", env_nested_delimiter="__", extra="ignore")

    state_dir: Path = PROJECT_ROOT / ".state"
    stack: StackSettings = Field(default_factory=StackSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    workers: WorkerSettings = Field(default_factory=WorkerSettings)
    grafana: GrafanaSettings = Field(default_factory=GrafanaSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    api_key: SecretStr | None = Field(None, description="IOTLM_API_KEY: the key `iotlm devices|labels|alarms` send.")

    def environ(self) -> dict[str, str]:
        """`IOTLM_*` variables that give a child process exactly these settings (lists and maps as JSON)."""
        import json

        env = {"IOTLM_STATE_DIR": str(self.state_dir)}
        for section in type(self).model_fields:
            value = getattr(self, section)
            if not isinstance(value, BaseModel):
                continue
            for name, field_value in value.model_dump(mode="json").items():
                text = json.dumps(field_value) if isinstance(field_value, (list, dict)) else str(field_value)
                env[f"IOTLM_{section.upper()}__{name.upper()}"] = text
        return env

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.stack.host_of('kafka')}:{self.stack.kafka_port}"

    @property
    def database_url(self) -> str:
        """The schema owner's URL (migrations, `iotlm db`); components use credentials.database_url."""
        from iotlm.credentials import database_url

        return database_url(self, "owner")

    @property
    def timescale_url(self) -> str:
        return f"postgresql+psycopg://postgres:any@{self.stack.host_of('timescale')}:{self.stack.timescale_port}/postgres?sslmode=disable"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.stack.host_of('redis')}:{self.stack.redis_port}/0"

    @property
    def api_url(self) -> str:
        return self.api.url or f"http://{self.api.host}:{self.api.port}"

    @property
    def models_dir(self) -> Path:
        """Where fine-tuned model versions' files live (settings.jobs.models_dir)."""
        return Path(self.jobs.models_dir) if self.jobs.models_dir else self.state_dir / "models"

    @property
    def mqtt_address(self) -> tuple[str, int]:
        return self.stack.host_of("mqtt"), self.stack.mqtt_port
