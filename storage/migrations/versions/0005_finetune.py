"""The fine-tuning loop: a model registry with lineage, files and hashes, and a job queue that runners
claim, heartbeat and resume (finetune/).

Plain tables on both lanes. At most one version of a model name is promoted at a time (a partial
unique index), so two promotions racing cannot both win.

Revision ID: 0005
Revises: 0004
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ts = sa.DateTime(timezone=True)
empty = sa.text("'{}'::jsonb")

MODEL_COLUMNS = (
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("model_versions.id")),  # the version it was fine-tuned from
    sa.Column("job_id", sa.Integer),  # the job that made it (no FK: jobs point at versions already)
    sa.Column("labels", sa.ARRAY(sa.Text), nullable=False, server_default="{}"),  # the label set it knows
    sa.Column("training", JSONB, nullable=False, server_default=empty),  # label ids, time ranges, devices, windows
    sa.Column("files", JSONB, nullable=False, server_default=empty),  # file name -> sha256
    sa.Column("content_hash", sa.String(64)),  # sha256 over the files' hashes
    sa.Column("reason", sa.Text),  # why it was (or was not) promoted
    sa.Column("previous_id", sa.Integer, sa.ForeignKey("model_versions.id")),  # promoted before it: what rollback restores
    sa.Column("retired_at", ts),
)
JOB_COLUMNS = (
    sa.Column("stage", sa.String(32), nullable=False, server_default="queued"),
    sa.Column("percent", sa.Float, nullable=False, server_default="0"),
    sa.Column("log", sa.ARRAY(sa.Text), nullable=False, server_default="{}"),  # the last lines, newest last
    sa.Column("runner", sa.Text),  # host:pid of the runner that holds it
    sa.Column("heartbeat_at", ts),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("result", JSONB, nullable=False, server_default=empty),  # metrics, the decision and its reason
)


def upgrade() -> None:
    for column in MODEL_COLUMNS:
        op.add_column("model_versions", column)
    op.create_index("model_versions_one_promoted", "model_versions", ["name"], unique=True,
                    postgresql_where=sa.text("status = 'promoted'"))
    for column in JOB_COLUMNS:
        op.add_column("finetune_jobs", column)
    op.create_index("finetune_jobs_open", "finetune_jobs", ["status", "id"],
                    postgresql_where=sa.text("status IN ('queued', 'running')"))


def downgrade() -> None:
    op.drop_index("finetune_jobs_open", "finetune_jobs")
    for column in reversed(JOB_COLUMNS):
        op.drop_column("finetune_jobs", column.name)
    op.drop_index("model_versions_one_promoted", "model_versions")
    for column in reversed(MODEL_COLUMNS):
        op.drop_column("model_versions", column.name)
