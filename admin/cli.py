"""Commands of the admin part: `iotlm api`, `iotlm keys ...` (on the database: that is how the first key
is made), and `iotlm devices|labels|alarms ...`, which call the API with IOTLM_API_KEY."""

from __future__ import annotations

import json
from pathlib import Path

import typer

keys_app = typer.Typer(help="API keys (directly on the database).", no_args_is_help=True)
devices_app = typer.Typer(help="The device registry, through the admin API.", no_args_is_help=True)
labels_app = typer.Typer(help="Labels, through the admin API.", no_args_is_help=True)
alarms_app = typer.Typer(help="Alarms, through the admin API.", no_args_is_help=True)
JsonOption = typer.Option(False, "--json", help="Print JSON (for machines).")


def _settings():
    from iotlm.settings import Settings

    return Settings()


def _client():
    from admin.client import ApiClient

    return ApiClient(_settings())


def _show(doc, as_json: bool, columns: tuple[str, ...] | None = None, title: str = "") -> None:
    if as_json:
        typer.echo(json.dumps(doc, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    rows = doc if isinstance(doc, list) else [doc]
    columns = columns or tuple(rows[0]) if rows else columns or ()
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console().print(table)


def api(host: str = typer.Option(None, help="Default settings.api.host (127.0.0.1)."),
        port: int = typer.Option(None, help="Default settings.api.port (8000)."),
        migrate: bool = typer.Option(True, help="Upgrade the schema first (needs the owner's password); a "
                                     "deployment migrates once in `iotlm stack provision` instead.")) -> None:
    """Serve the admin API (OpenAPI at /openapi.json, docs at /docs) until Ctrl-C."""
    import logging

    import uvicorn

    from admin.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    settings = _settings()
    uvicorn.run(create_app(settings, migrate=migrate), host=host or settings.api.host, port=port or settings.api.port)


def _database():
    from storage.lane import engine_from_settings, url_from_settings
    from storage.migrate import upgrade

    settings = _settings()
    upgrade(url_from_settings(settings))
    return engine_from_settings(settings)


@keys_app.command("create")
def keys_create(scope: str = typer.Option(..., help="read, label (implies read) or admin (implies both)."),
                name: str = typer.Option("cli", help="What the key is for (shown in lists and the audit log)."),
                expires_days: float = typer.Option(None, "--expires-days", help="Refused after this many days."),
                as_json: bool = JsonOption) -> None:
    """Make a key and print it once: only its hash is stored."""
    from admin.keys import create_key

    engine = _database()
    try:
        with engine.begin() as conn:
            key, row = create_key(conn, scope, name, expires_days)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps({"key": key, "id": row["id"], "scopes": row["scopes"],
                               "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None}))
    else:
        typer.echo(f"key {row['id']} ({scope}): {key}\nstore it now: it is not shown again")


@keys_app.command("list")
def keys_list(as_json: bool = JsonOption) -> None:
    from admin.keys import list_keys

    engine = _database()
    with engine.connect() as conn:
        rows = list_keys(conn)
    engine.dispose()
    _show(rows, as_json, ("id", "name", "prefix", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at"),
          "API keys")


@keys_app.command("revoke")
def keys_revoke(key_id: int = typer.Argument(..., help="The key's id (`iotlm keys list`)."),
                as_json: bool = JsonOption) -> None:
    from admin.keys import revoke_key

    engine = _database()
    with engine.begin() as conn:
        row = revoke_key(conn, key_id)
    engine.dispose()
    if row is None:
        typer.echo(f"no key {key_id}", err=True)
        raise typer.Exit(1)
    _show(row, as_json, ("id", "name", "revoked_at"))


DEVICE_COLUMNS = ("id", "kind", "placement", "room_id", "owner", "active", "credentials_issued_at")


@devices_app.command("list")
def devices_list(room: str = typer.Option(None, help="Only this room's."), site: str = typer.Option(None),
                 active: bool = typer.Option(None, "--active/--inactive", help="Only active or only deactivated."),
                 as_json: bool = JsonOption) -> None:
    params = {k: v for k, v in {"room_id": room, "site_id": site, "active": active}.items() if v is not None}
    _show(_client()("GET", "/v1/devices", params=params).json(), as_json, DEVICE_COLUMNS, "devices")


@devices_app.command("register")
def devices_register(device_id: str, kind: str = typer.Option("imu"), placement: str = typer.Option("unknown"),
                     room: str = typer.Option(None), owner: str = typer.Option(None), as_json: bool = JsonOption) -> None:
    body = {"id": device_id, "kind": kind, "placement": placement, "room_id": room, "owner": owner}
    _show(_client()("POST", "/v1/devices", json=body).json(), as_json, DEVICE_COLUMNS)


@devices_app.command("deactivate")
def devices_deactivate(device_id: str, as_json: bool = JsonOption) -> None:
    """Its frames are refused (unknown_device) from now on; its history stays."""
    _show(_client()("DELETE", f"/v1/devices/{device_id}").json(), as_json, DEVICE_COLUMNS)


@devices_app.command("credentials")
def devices_credentials(device_id: str, as_json: bool = JsonOption) -> None:
    """Issue the device's ingest secret (replacing any earlier one); shown once."""
    _show(_client()("POST", f"/v1/devices/{device_id}/credentials").json(), as_json, ("device_id", "secret", "issued_at"))


@labels_app.command("import")
def labels_import(path: Path = typer.Argument(..., exists=True, dir_okay=False,
                                             help="CSV (device_id,starts_at,ends_at,label[,labeled_by]) or a JSON list."),
                  as_json: bool = JsonOption) -> None:
    """Store every label of the file, or none (each refused one is listed with why)."""
    client = _client()
    if path.suffix.lower() == ".json":
        try:
            labels = json.loads(path.read_text())
        except ValueError as exc:
            typer.echo(f"{path} is not JSON: {exc}", err=True)
            raise typer.Exit(2) from None
        response = client("POST", "/v1/labels:bulk", json={"labels": labels})
    else:
        response = client("POST", "/v1/labels:import", content=path.read_bytes(), headers={"content-type": "text/csv"})
    result = response.json()
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"stored {result['created']} labels")


ALARM_COLUMNS = ("id", "status", "severity", "rule", "subject", "occurrences", "last_seen_at", "assignee", "comment")


@alarms_app.command("list")
def alarms_list(status: str = typer.Option("open", help="open, active, acknowledged, cleared or all."),
                device: str = typer.Option(None), as_json: bool = JsonOption) -> None:
    params = {k: v for k, v in {"status": None if status == "all" else status, "device_id": device}.items() if v}
    _show(_client()("GET", "/v1/alarms", params=params).json(), as_json, ALARM_COLUMNS, "alarms")


@alarms_app.command("ack")
def alarms_ack(alarm_id: int, comment: str = typer.Option(None), assignee: str = typer.Option(None),
               as_json: bool = JsonOption) -> None:
    body = {k: v for k, v in {"comment": comment, "assignee": assignee}.items() if v is not None}
    _show(_client()("POST", f"/v1/alarms/{alarm_id}/ack", json=body).json(), as_json, ALARM_COLUMNS)


@alarms_app.command("clear")
def alarms_clear(alarm_id: int, comment: str = typer.Option(None), as_json: bool = JsonOption) -> None:
    body = {"comment": comment} if comment is not None else {}
    _show(_client()("POST", f"/v1/alarms/{alarm_id}/clear", json=body).json(), as_json, ALARM_COLUMNS)


def _since_seconds(value: str) -> float:
    """'90s', '10m', '2h', '1d' or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    try:
        return float(value[:-1]) * units[value[-1]] if value and value[-1] in units else float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give e.g. 90s, 10m, 2h or 1d", param_hint="--since") from None


def ask(question: str = typer.Argument(..., help="The question, in words (at most 2000 characters)."),
        device: str = typer.Option(None, "--device", help="Ask about this device."),
        room: str = typer.Option(None, "--room", help="Ask about this room."),
        vs: list[str] = typer.Option([], "--vs", help="Compare with this device (or room, with --room); repeatable."),
        since: str = typer.Option("10m", help="How far back: 90s, 10m, 2h, 1d."),
        end: str = typer.Option(None, help="End of the range, ISO time with zone (default: now)."),
        no_llm: bool = typer.Option(False, "--no-llm", help="Answer from the stored facts alone (no LLM load)."),
        narrate: bool = typer.Option(False, help="Let the LLM phrase the facts too (kept only when faithful)."),
        as_json: bool = JsonOption) -> None:
    """A grounded answer about a device or a room, from storage and the adapter-LLM (reader role)."""
    from datetime import datetime

    from admin.ask import AskError, ask as answer_question
    from storage.lane import engine_from_settings
    from storage.queries import StorageQueries

    end_at = None
    if end:
        try:
            end_at = datetime.fromisoformat(end)
        except ValueError:
            raise typer.BadParameter(f"{end!r} is not an ISO time", param_hint="--end") from None
        if end_at.tzinfo is None:
            raise typer.BadParameter("give the time zone, e.g. 2026-12-01T17:00:00+00:00", param_hint="--end")
    settings = _settings()
    engine = engine_from_settings(settings, principal="reader")
    llm = None
    if not no_llm:
        from models.llm.answer import SensorLLM

        llm = SensorLLM.shared()
    try:
        result = answer_question(engine, StorageQueries(engine), question, device_id=device, room_id=room,
                                 since_s=_since_seconds(since), end=end_at, llm=llm, narrate=narrate,
                                 compare_with=vs)
    except AskError as exc:
        typer.echo(f"cannot answer: {exc.reason}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(result, default=str))
    else:
        typer.echo(result["answer"])
        cites = result["cites"]
        typer.echo(f"[{result['range']['start']} .. {result['range']['end']}; {cites['episodes']} episodes, "
                   f"{cites['alerts']} alerts; models {', '.join(cites['model_versions']) or '-'}]")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the root app."""
    app.command("api")(api)
    app.command("ask")(ask)
    app.add_typer(keys_app, name="keys")
    app.add_typer(devices_app, name="devices")
    app.add_typer(labels_app, name="labels")
    app.add_typer(alarms_app, name="alarms")
