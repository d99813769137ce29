"""`iotlm grafana export|push|preview`: dashboards and alert rules as code (deploy/grafana/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

grafana_app = typer.Typer(help="Grafana dashboards, data sources and alert rules, generated from code.",
                          no_args_is_help=True)

LaneOption = typer.Option(
    "detect", "--lane",
    help="detect | postgresql | timescale. detect reads the lane recorded in the database "
         "(storage.lane picks the server); the others skip the database.",
)
JsonOption = typer.Option(False, "--json", help="Print one JSON object for machines.")


def _fail(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]grafana:[/] {escape(message)}", highlight=False)
    raise typer.Exit(1)


def _lane(settings, lane: str):
    """(Lane, server_version_num) from --lane, or read from the database."""
    from sqlalchemy.exc import SQLAlchemyError

    from deploy.grafana.provisioning_tree import detect_lane
    from storage.lane import Lane

    choices = {"postgresql": Lane.POSTGRESQL, "postgres": Lane.POSTGRESQL, "timescale": Lane.TIMESCALEDB,
               "timescaledb": Lane.TIMESCALEDB}
    if lane.lower() in choices:
        return choices[lane.lower()], 150000
    if lane.lower() != "detect":
        _fail(f"unknown --lane {lane!r}: expected detect, postgresql or timescale")
    try:
        return detect_lane(settings)
    except SQLAlchemyError as exc:
        _fail(f"cannot read the storage lane from the database ({str(exc).splitlines()[0]}); "
              "start it and run `iotlm db upgrade`, or pass --lane postgresql|timescale")


@grafana_app.command()
def export(directory: Path = typer.Argument(..., help="Where to write the provisioning/ tree."),
           lane: str = LaneOption,
           dashboards_path: str = typer.Option(None, help="Dashboards folder as Grafana sees it "
                                                          "(default: DIR/provisioning/dashboards/iotlm, absolute)."),
           as_json: bool = JsonOption) -> None:
    """Write Grafana's provisioning tree: data sources, dashboard provider, dashboards, alerting."""
    from deploy.grafana.provisioning_tree import export as write_tree
    from iotlm.settings import Settings

    settings = Settings()
    chosen, version = _lane(settings, lane)
    if directory.exists() and not directory.is_dir():
        _fail(f"{directory} exists and is not a folder")
    try:
        files = write_tree(settings, directory, chosen, version, dashboards_path)
    except OSError as exc:
        _fail(f"cannot write under {directory}: {exc}")
    if as_json:
        typer.echo(json.dumps({"lane": chosen.value, "files": [str(f) for f in files]}))
    else:
        typer.echo(f"lane {chosen.value}: wrote {len(files)} files under {directory}")


@grafana_app.command()
def push(url: str = typer.Option(..., "--url", help="Grafana's address, e.g. http://127.0.0.1:3000"),
         token: str = typer.Option(..., "--token", envvar="IOTLM_GRAFANA_TOKEN",
                                   help="A service account token with the Admin role (or IOTLM_GRAFANA_TOKEN)."),
         lane: str = LaneOption, as_json: bool = JsonOption) -> None:
    """Upload data sources, dashboards, alert rules and notifications; a second push changes nothing."""
    from deploy.grafana.push import PushError, check_target, push as push_all
    from iotlm.settings import Settings

    settings = Settings()
    try:
        check_target(url, token)
    except PushError as exc:
        _fail(str(exc))
    chosen, version = _lane(settings, lane)
    try:
        report = push_all(settings, url, token, chosen, version)
    except PushError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    for kind in ("created", "updated"):
        for what in getattr(report, kind):
            typer.echo(f"{kind}: {what}")
    typer.echo(f"{len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged")


@grafana_app.command()
def preview(directory: Path = typer.Argument(..., help="Where to write room.png and fleet.png."),
            hours: float = typer.Option(6.0, help="Time range: the last N hours."),
            lane: str = LaneOption) -> None:
    """Draw the main room and fleet panels from the database with the panels' own SQL (matplotlib)."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy.exc import SQLAlchemyError

    from deploy.grafana.dashboards import dashboards
    from deploy.grafana.preview import render
    from iotlm.settings import Settings
    from storage.lane import Lane, engine_from_settings

    if hours <= 0:
        _fail("--hours must be positive")
    settings = Settings()
    chosen, _ = _lane(settings, lane)
    end = datetime.now(timezone.utc)
    engine = engine_from_settings(settings, "timescale" if chosen is Lane.TIMESCALEDB else "postgresql")
    try:
        files = render(engine, dashboards(settings), directory, time_from=end - timedelta(hours=hours), time_to=end,
                       timescaledb=chosen is Lane.TIMESCALEDB)
    except SQLAlchemyError as exc:
        _fail(str(exc).splitlines()[0])
    finally:
        engine.dispose()
    typer.echo("\n".join(str(f) for f in files))


def register(app: typer.Typer) -> None:
    """Add this part's commands to the root app."""
    app.add_typer(grafana_app, name="grafana")
