"""The `iotlm` command. Each part of the data's path registers its own commands here.

Part modules import their heavy dependencies (torch, aiokafka, sqlalchemy) inside the command
functions, so `iotlm --help` and `iotlm stack status` stay fast.
"""

from __future__ import annotations

import typer

from deploy import cli as deploy_cli
from deploy.grafana import cli as grafana_cli
from ingest import cli as ingest_cli
from models import cli as models_cli
from storage import cli as storage_cli
from stream_workers import cli as workers_cli

app = typer.Typer(help="IoT-LM: live knowledge from smart-building sensor streams.", no_args_is_help=True)

for part in (deploy_cli, ingest_cli, models_cli, storage_cli, workers_cli, grafana_cli):
    part.register(app)


if __name__ == "__main__":
    app()
