"""Commands of the ingest part: `iotlm ingest ...` and `iotlm simulate`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

ingest_app = typer.Typer(help="Device frames into Kafka: MQTT bridge, raw payloads, dead letters.", no_args_is_help=True)


def _settings():
    from iotlm.settings import Settings

    return Settings()


def _print_json(doc) -> None:
    typer.echo(json.dumps(doc, default=str))


def _admission(ctx: typer.Context, settings):
    """The registry-backed admission the composition root (iotlm.cli) offers, or None: settings decide."""
    obj = ctx.find_root().obj
    return obj.open_fleet(settings, "ingest") if obj is not None else None


@ingest_app.command("mqtt-bridge")
def mqtt_bridge(
    ctx: typer.Context,
    max_messages: int = typer.Option(None, help="Stop after this many messages (tests, demos)."),
    duration: float = typer.Option(None, help="Stop after this many seconds."),
    client_id: str = typer.Option(None, help="MQTT client id (default settings.ingest.mqtt_client_id)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Forward MQTT messages on settings.ingest.mqtt_topic through the ingest gate to Kafka."""
    from dataclasses import asdict

    from rich.console import Console

    from ingest.gate import IngestGate
    from ingest.mqtt_bridge import MqttBridge
    from ingest.producer import DeviceProducer

    settings = _settings()
    console = Console(stderr=True)
    admission = _admission(ctx, settings)
    with DeviceProducer(settings, client_id="iotlm-mqtt-bridge") as producer:
        bridge = MqttBridge(
            settings, IngestGate(settings, producer, admission), client_id=client_id,
            on_ready=lambda: console.print("subscribed; forwarding"),
        )
        host, port = settings.mqtt_address
        console.print(
            f"bridging mqtt://{host}:{port}/{settings.ingest.mqtt_topic} -> kafka "
            f"{settings.kafka.frames_topic} (dead letters: {settings.kafka.dlq_topic}); Ctrl-C stops"
        )
        try:
            summary = bridge.run(max_messages=max_messages, duration_s=duration)
        except ConnectionRefusedError:
            console.print(f"[red]no MQTT broker at {host}:{port}: is the stack up? (iotlm stack up)[/red]")
            raise typer.Exit(1) from None
        finally:
            if admission is not None:
                admission.close()
    if as_json:
        _print_json(asdict(summary))
    else:
        console.print(
            f"received {summary.received}, forwarded {summary.accepted}, dead-lettered "
            f"{summary.dead_lettered} in {summary.wall_s:.1f} s (stopped by {summary.stopped_by})"
        )
    if summary.failure:
        console.print(f"[red]{summary.failure}[/red]")
        raise typer.Exit(1)


@ingest_app.command("send")
def send(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A file holding one frame (JSON or msgpack); '-' reads stdin."),
    source: str = typer.Option("cli", help="Source name recorded with the frame or dead letter."),
    as_json: bool = typer.Option(False, "--json", help="Print the gate's decision as JSON."),
) -> None:
    """Push one raw payload through the ingest gate, as a device would."""
    from dataclasses import asdict

    from ingest.gate import IngestGate
    from ingest.producer import DeviceProducer

    settings = _settings()
    raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    admission = _admission(ctx, settings)
    try:
        with DeviceProducer(settings) as producer:
            decision = IngestGate(settings, producer, admission).admit(raw, source)
    finally:
        if admission is not None:
            admission.close()
    if as_json:
        _print_json(asdict(decision))
    elif decision.accepted:
        typer.echo(f"forwarded frame of {decision.device_id} to {settings.kafka.frames_topic}")
    else:
        typer.echo(f"dead-lettered to {settings.kafka.dlq_topic} [{decision.code}]: {decision.reason}")
    raise typer.Exit(0 if decision.accepted else 2)


@ingest_app.command("dlq")
def dead_letters(
    last: int = typer.Option(20, help="How many of the most recent dead letters to show."),
    as_json: bool = typer.Option(False, "--json", help="Print them as JSON (payload as a short preview)."),
) -> None:
    """Show the most recent refused payloads and why they were refused."""
    from rich.console import Console
    from rich.table import Table

    from ingest.dead_letters import read_dead_letters

    settings = _settings()
    letters = read_dead_letters(settings, last=last)
    if as_json:
        _print_json(
            [
                {k: v for k, v in vars(d).items() if k != "payload"} | {"preview": d.payload[:64].decode("latin-1")}
                for d in letters
            ]
        )
        return
    table = Table(title=f"dead letters in {settings.kafka.dlq_topic} (last {last})")
    for column in ("received", "source", "device", "code", "reason", "bytes"):
        table.add_column(column, overflow="fold")
    for d in letters:
        received = time.strftime("%H:%M:%S", time.localtime(d.received_at))
        table.add_row(received, d.source, d.device_id or "", d.code, d.reason, f"{d.size:,}")
    Console().print(table)


def simulate(
    source: str = typer.Option("hapt", help="hapt (recorded subjects), synthetic (simulated people), rooms "
                               "(simulated buildings' room devices), river-occupancy or appliances-house (real rooms)."),
    devices: int = typer.Option(9, help="Number of devices; with hapt the 9 test subjects come first; with rooms "
                                "the number of simulated buildings (each has several room devices)."),
    speed: float = typer.Option(None, help="Times real time; 0 sends as fast as possible (default: 1; rooms: 0)."),
    duration: float = typer.Option(None, help="Seconds of signal per device (default: 60; rooms: one day; real "
                                   "room series: all of it)."),
    frame_s: float = typer.Option(1.0, "--frame-s", help="Seconds of signal per frame."),
    fmt: str = typer.Option("msgpack", "--format", help="msgpack (compact) or json."),
    seed: int = typer.Option(0, help="Random seed of the synthetic people (rooms: of the simulated buildings)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (progress goes to stderr)."),
) -> None:
    """Replay recorded or simulated signals as live devices onto the frames topic."""
    from rich.console import Console
    from rich.table import Table

    from ingest.rooms import ROOM_SOURCES, replay_rooms
    from ingest.simulate import replay_hapt, replay_synthetic

    if source not in ("hapt", "synthetic", *ROOM_SOURCES):
        typer.echo(f"--source {source} is unknown: use hapt (recorded subjects), synthetic (simulated people), "
                   f"or one of {', '.join(ROOM_SOURCES)} (room devices)", err=True)
        raise typer.Exit(2)
    rooms = source in ROOM_SOURCES
    speed = (0.0 if rooms else 1.0) if speed is None else speed
    if duration is None:  # simulated rooms: a day; real room series: the whole recording
        duration = (86_400.0 if source == "rooms" else float("inf")) if rooms else 60.0
    if fmt not in ("msgpack", "json"):
        raise typer.BadParameter("--format must be msgpack or json")
    settings = _settings()
    console = Console(stderr=as_json)
    options = dict(fmt=fmt, console=console)
    try:
        if rooms:  # frames of minutes of reports: --frame-s does not apply
            summary = replay_rooms(settings, source, devices, speed, duration, seed=seed,
                                   **options)
        elif source == "hapt":
            summary = replay_hapt(settings, devices, speed, duration, frame_s, **options)
        else:
            summary = replay_synthetic(settings, devices, speed, duration, frame_s, seed=seed, **options)
    except ValueError as exc:  # arguments the replay cannot honour (FrameError included)
        typer.echo(f"simulate: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        _print_json(summary.to_dict())
        return
    table = Table(title=f"{source} replay -> {summary.topic}")
    for column in ("device", "origin", "frames", "samples", "bytes"):
        table.add_column(column, justify="left" if column in ("device", "origin") else "right")
    for d in summary.devices:
        table.add_row(d.device_id, d.origin, str(d.frames), str(d.samples), f"{d.bytes:,}")
    console.print(table)
    console.print(
        f"{summary.frames} frames, {summary.bytes:,} bytes in {summary.wall_s:.2f} s "
        f"({summary.frames_per_s:,.0f} frames/s, {summary.bytes / max(summary.wall_s, 1e-9) / 1e6:.2f} MB/s)"
    )


def register(app: typer.Typer) -> None:
    """Add this part's commands to the root app."""
    app.add_typer(ingest_app, name="ingest")
    app.command("simulate")(simulate)
