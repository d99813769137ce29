"""`iotlm stack up|status|down|logs`: the local services on 127.0.0.1 (see deploy/stack.py);
`iotlm stack secrets|provision`: the same for services a deployment runs (deploy/provision.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

stack_app = typer.Typer(help="The local stack: Kafka, PostgreSQL, Redis, Mosquitto, PGlite TimescaleDB.",
                        no_args_is_help=True)


def _settings():
    from iotlm.settings import Settings

    return Settings()


def _stack():
    from deploy.stack import Stack

    return Stack(_settings())


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]stack:[/] {message}", highlight=False)
    raise typer.Exit(1)


def _print_table(statuses) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("service", "healthy", "address", "pid", "detail")
    for s in statuses:
        table.add_row(s.name, "[green]yes[/]" if s.healthy else "[red]no[/]", s.address,
                      str(s.pid) if s.pid else "-", s.detail)
    Console().print(table)


@stack_app.command("up")
def up(
    service: list[str] = typer.Option(None, "--service", "-s", help="Start only this service (repeatable): "
                                      "kafka, postgres, redis, mosquitto, timescale."),
    timescale: bool = typer.Option(False, "--timescale", help="Also start the PGlite TimescaleDB server."),
    as_json: bool = typer.Option(False, "--json", help="Print the started services and status as JSON."),
) -> None:
    """Start the services that are not already healthy and wait for them (default: all but timescale)."""
    from rich.console import Console

    from deploy.stack import DEFAULT_SERVICES, StackError

    names = list(service or DEFAULT_SERVICES)
    if timescale and "timescale" not in names:
        names.append("timescale")
    stack = _stack()
    try:
        if as_json:
            started = stack.up(names)
        else:
            with Console(stderr=True).status(f"starting {', '.join(names)} ...") as spinner:
                started = stack.up(names, progress=lambda step: spinner.update(f"{step} ..."))
    except StackError as exc:
        _fail(str(exc))
    statuses = stack.status(names)
    if as_json:
        typer.echo(json.dumps({"started": started, "services": [s.to_dict() for s in statuses]}))
    else:
        Console().print(f"started: {', '.join(started) or 'nothing (already running)'}")
        _print_table(statuses)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


@stack_app.command("status")
def status(
    service: list[str] = typer.Option(None, "--service", "-s", help="Check only this service (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per service."),
) -> None:
    """Check every service with its own protocol. Exit code 1 when a checked service is down
    (with no --service, only the default four count: timescale is optional)."""
    from deploy.stack import DEFAULT_SERVICES, StackError

    stack = _stack()
    try:
        statuses = stack.status(service or None)
    except StackError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in statuses]))
    else:
        _print_table(statuses)
    required = set(service or DEFAULT_SERVICES)
    if not all(s.healthy for s in statuses if s.name in required):
        raise typer.Exit(1)


@stack_app.command("down")
def down(
    service: list[str] = typer.Option(None, "--service", "-s", help="Stop only this service (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the stopped services as JSON."),
) -> None:
    """Stop the services this stack started (never a process it did not start)."""
    from deploy.stack import StackError

    try:
        stopped = _stack().down(service or None)
    except StackError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"stopped": stopped}))
    else:
        typer.echo(f"stopped: {', '.join(stopped) or 'nothing of ours was running'}")


@stack_app.command("logs")
def logs(
    service: str = typer.Argument(..., help="kafka, postgres, redis, mosquitto or timescale."),
    lines: int = typer.Option(40, "--lines", "-n", help="How many of the last lines to show."),
) -> None:
    """Show the end of a service's log ({state_dir}/logs/<service>.log)."""
    from deploy.process import log_tail
    from deploy.stack import StackError

    stack = _stack()
    if service not in stack.services:
        _fail(str(StackError(f"unknown service {service}; known: {', '.join(stack.services)}")))
    log_file = stack.services[service].process.log_file
    if not log_file.exists():
        _fail(f"no log yet at {log_file}")
    typer.echo(log_tail(log_file, lines))


@stack_app.command("secrets")
def secrets(out: Path = typer.Option(..., "--out", help="Folder for the passwords and the files derived from them."),
            owner: list[str] = typer.Option(None, "--owner", help="SERVICE=UID: hand that service's folder to the "
                                            "uid its container runs as (repeatable), e.g. redis=999."),
            as_json: bool = typer.Option(False, "--json", help="Print the written paths as JSON.")) -> None:
    """Every password of a deployment (generated once, kept after) and what each service and component
    reads: per-component password sets, Redis's users file, Mosquitto's accounts, the Kafka broker's
    configuration (deploy/provision.py)."""
    from deploy.provision import write_secrets

    owners = {}
    for item in owner or []:
        service, _, uid = item.partition("=")
        if not uid.isdigit():
            _fail(f"--owner {item!r}: expected SERVICE=UID, e.g. redis=999")
        owners[service] = int(uid)
    try:
        paths = write_secrets(_settings(), out, owners)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps({"written": [str(p) for p in paths]}) if as_json
               else "\n".join(str(p) for p in paths))


@stack_app.command("provision")
def provision(as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON.")) -> None:
    """Ready services this stack does not run (compose, Kubernetes): Kafka users, topics and ACLs;
    PostgreSQL roles, TimescaleDB extension, schema and grants; Redis users reloaded. Idempotent."""
    from rich.console import Console

    from deploy.provision import provision as run

    with Console(stderr=True).status("provisioning ...") as spinner:
        outcome = run(_settings(), progress=lambda step: spinner.update(f"{step} ..."))
    typer.echo(json.dumps(outcome) if as_json else "\n".join(f"{k}: {v}" for k, v in outcome.items()))


def register(app: typer.Typer) -> None:
    """Add `iotlm stack ...` to the root app."""
    app.add_typer(stack_app, name="stack")
