"""The `iotlm` command. Each part of the data's path registers its own commands here.

This is the composition root: parts upstream (the gate, the workers) get the fleet registry of the
admin part from here, through the click context (`ctx.obj.open_fleet`), never by importing it.

Part modules import their heavy dependencies (torch, aiokafka, sqlalchemy) inside the command
functions, so `iotlm --help` and `iotlm stack status` stay fast.
"""

from __future__ import annotations

import typer

from admin import cli as admin_cli
from benchmarks import cli as bench_cli
from deploy import cli as deploy_cli
from deploy.grafana import cli as grafana_cli
from finetune import cli as finetune_cli
from iotlm import demo
from ingest import cli as ingest_cli
from models import cli as models_cli
from storage import cli as storage_cli
from stream_workers import cli as workers_cli

app = typer.Typer(help="IoT-LM: live knowledge from smart-building sensor streams.", no_args_is_help=True)


class Composition:
    """What the root hands to every command (`ctx.obj`)."""

    @staticmethod
    def open_fleet(settings, principal: str):
        """The started fleet registry when settings.ingest.admission is 'registry' (close it when done), else None.
        `principal`: the caller's Kafka user (it follows the control topic as that)."""
        if settings.ingest.admission != "registry":
            return None
        from admin.registry import FleetRegistry

        return FleetRegistry(settings, principal=principal).start()


@app.callback()
def _root(ctx: typer.Context) -> None:
    ctx.obj = Composition()


for part in (deploy_cli, ingest_cli, models_cli, storage_cli, workers_cli, admin_cli, grafana_cli, finetune_cli,
             bench_cli):
    part.register(app)
app.command("demo")(demo.demo)


if __name__ == "__main__":
    app()
