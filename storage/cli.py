"""`iotlm db ...`: schema migrations, lane and schema facts, periodic maintenance."""

from __future__ import annotations

import json
import time

import typer

db_app = typer.Typer(help="Storage schema (TimescaleDB or PostgreSQL lane) and its upkeep.", no_args_is_help=True)

LaneOption = typer.Option(
    "auto", "--lane",
    help="postgresql | timescale | auto. Picks the server when --url is absent (timescale -> the PGlite "
         "TimescaleDB, otherwise PostgreSQL) and, on first upgrade, the lane: auto takes TimescaleDB when available.",
)
UrlOption = typer.Option(None, "--url", help="SQLAlchemy URL; default from settings.")
JsonOption = typer.Option(False, "--json", help="Print one JSON object for machines.")


def _engine(lane: str, url: str | None):
    from iotlm.settings import Settings
    from storage.lane import open_engine, url_from_settings

    settings = Settings()
    # `auto` without --url means the PostgreSQL server; `timescale` the TimescaleDB one.
    url = url or url_from_settings(settings, "postgresql" if lane == "auto" else lane)
    # A command holds one connection at a time anyway, and an unpooled engine is also right for PGlite.
    return settings, open_engine(url, single_connection=True)


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    for key, value in result.items():
        if isinstance(value, (dict, list)) and value:
            typer.echo(f"{key}:")
            for item in value.items() if isinstance(value, dict) else enumerate(value):
                typer.echo(f"  {item[0]}: {item[1]}" if isinstance(value, dict) else f"  - {item[1]}")
        else:
            typer.echo(f"{key}: {value}")


@db_app.command()
def upgrade(lane: str = LaneOption, url: str | None = UrlOption, revision: str = typer.Option("head"),
            as_json: bool = JsonOption) -> None:
    """Create or update the schema; the lane is detected (or forced) on first creation."""
    from storage import migrate

    settings, engine = _engine(lane, url)
    chosen = migrate.upgrade(engine, lane=lane, revision=revision, storage_settings=settings.storage)
    _print({"lane": chosen.value, "revision": migrate.current_revision(engine)}, as_json)


@db_app.command()
def downgrade(lane: str = LaneOption, url: str | None = UrlOption,
              revision: str = typer.Option("base", help="Target revision; 'base' drops every storage table."),
              as_json: bool = JsonOption) -> None:
    """Roll the schema back."""
    from storage import migrate

    _, engine = _engine(lane, url)
    migrate.downgrade(engine, revision=revision)
    _print({"revision": migrate.current_revision(engine)}, as_json)


@db_app.command()
def info(lane: str = LaneOption, url: str | None = UrlOption, as_json: bool = JsonOption) -> None:
    """Lane (timescaledb or postgresql), schema revision, hypertables or partitions, aggregates, policies."""
    from storage import migrate

    _, engine = _engine(lane, url)
    _print(migrate.describe(engine), as_json)


@db_app.command()
def maintain(lane: str = LaneOption, url: str | None = UrlOption,
             every: float = typer.Option(0, help="Repeat every N seconds (0: once)."),
             run_policies: bool = typer.Option(False, help="TimescaleDB lane: run the policy jobs now too."),
             as_json: bool = JsonOption) -> None:
    """Create partitions ahead, drop expired ones, refresh the hourly aggregates."""
    from storage.maintenance import maintain as maintain_once

    settings, engine = _engine(lane, url)
    while True:
        _print(maintain_once(engine, settings.storage, run_timescale_policies=run_policies), as_json)
        if every <= 0:
            return
        time.sleep(every)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the root app."""
    app.add_typer(db_app, name="db")
