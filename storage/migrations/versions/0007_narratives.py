"""Narratives: the narration stage's one-line descriptions of closed episodes and room-state changes.

A plain table on both lanes (one row per closed episode or state change: small next to the predictions),
keyed like the rows it describes, so a re-delivered episode rewrites its narrative instead of adding one.
`at` / `text` serve Grafana as annotations; the workers write it (grants in storage.migrate).

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "narratives",
        sa.Column("subject_id", sa.String(64), primary_key=True),  # the device (episode) or room device (state)
        sa.Column("at", ts, primary_key=True),  # the episode's start, the state change's window end
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),  # the adapter that wrote the text
        sa.Column("ends_at", ts),
        sa.Column("room_id", sa.String(64)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("source", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),  # what it describes
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint("kind IN ('episode', 'room_state')", name="narratives_kind_known"),
        sa.CheckConstraint("length(text) <= 500", name="narratives_text_short"),
    )
    op.create_index("narratives_at", "narratives", ["at"])
    op.create_index("narratives_room", "narratives", ["room_id", "at"])


def downgrade() -> None:
    op.drop_table("narratives")
