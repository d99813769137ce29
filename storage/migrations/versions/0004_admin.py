"""What the admin API keeps: key lookup and expiry, device kind and deactivation, label sets per site,
alert rules as data, alarms with a lifecycle, and the audit log of every write.

Plain tables on both lanes (none of them is a time series worth a hypertable: an audit log of
configuration changes stays small).

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ts = sa.DateTime(timezone=True)
now = sa.text("now()")
RULE_KINDS = "('fall', 'sensor_fault', 'no_movement', 'room_hours', 'device_silent')"


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("prefix", sa.String(16), nullable=False, server_default=""))
    op.alter_column("api_keys", "prefix", server_default=None)
    op.add_column("api_keys", sa.Column("expires_at", ts))
    op.add_column("api_keys", sa.Column("last_used_at", ts))
    op.create_index("api_keys_prefix", "api_keys", ["prefix"])
    op.create_check_constraint("api_keys_scopes_known", "api_keys", "scopes <@ ARRAY['read', 'label', 'admin']::text[]")

    op.add_column("devices", sa.Column("kind", sa.String(32)))
    op.add_column("devices", sa.Column("deactivated_at", ts))
    op.add_column("devices", sa.Column("credentials_issued_at", ts))

    op.create_table(
        "label_sets",
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("labels", sa.ARRAY(sa.Text), nullable=False),
        sa.Column("updated_at", ts, nullable=False, server_default=now),
        sa.CheckConstraint("cardinality(labels) >= 2", name="label_sets_two_or_more"),
    )
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_id", sa.String(64), nullable=False),  # '' for the whole fleet
        sa.Column("params", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", ts, nullable=False, server_default=now),
        sa.Column("updated_at", ts, nullable=False, server_default=now),
        sa.UniqueConstraint("kind", "scope", "scope_id", name="alert_rules_one_per_kind_and_scope"),
        sa.CheckConstraint(f"kind IN {RULE_KINDS}", name="alert_rules_kind_known"),
        sa.CheckConstraint("scope IN ('fleet', 'site', 'room', 'device')", name="alert_rules_scope_known"),
        sa.CheckConstraint("(scope = 'fleet') = (scope_id = '')", name="alert_rules_scope_id_given"),
    )
    op.create_table(
        "alarms",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("subject", sa.String(80), nullable=False),  # 'device:<id>' or 'room:<id>'
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(64)),
        sa.Column("room_id", sa.String(64)),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("dedup_keys", sa.ARRAY(sa.Text), nullable=False),  # every alert counted: a re-delivery counts once
        sa.Column("occurrences", sa.Integer, nullable=False, server_default="1"),
        sa.Column("first_seen_at", ts, nullable=False),
        sa.Column("last_seen_at", ts, nullable=False),
        sa.Column("assignee", sa.Text),
        sa.Column("comment", sa.Text),
        sa.Column("acknowledged_at", ts),
        sa.Column("acknowledged_by", sa.Integer),
        sa.Column("cleared_at", ts),
        sa.Column("cleared_by", sa.Integer),
        sa.Column("created_at", ts, nullable=False, server_default=now),
        sa.Column("updated_at", ts, nullable=False, server_default=now),
        sa.CheckConstraint("status IN ('active', 'acknowledged', 'cleared')", name="alarms_status_known"),
        sa.CheckConstraint("severity IN ('info', 'warning', 'critical')", name="alarms_severity_known"),
        sa.CheckConstraint("occurrences > 0", name="alarms_occurrences_positive"),
    )
    # The database, not the API, guarantees one open alarm per subject and rule.
    op.create_index("alarms_one_open", "alarms", ["subject", "rule"], unique=True,
                    postgresql_where=sa.text("status <> 'cleared'"))
    op.create_index("alarms_last_seen", "alarms", ["last_seen_at"])
    op.create_index("alarms_subject_rule", "alarms", ["subject", "rule"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", ts, nullable=False, server_default=now),
        sa.Column("key_id", sa.Integer),  # None: done by the system (the alarm keeper) or the local CLI
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.Text, nullable=False),
        sa.Column("before", JSONB),
        sa.Column("after", JSONB),
    )
    op.create_index("audit_log_entity", "audit_log", ["entity", "entity_id"])
    op.create_index("audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    for table in ("audit_log", "alarms", "alert_rules", "label_sets"):
        op.drop_table(table)
    for column in ("credentials_issued_at", "deactivated_at", "kind"):
        op.drop_column("devices", column)
    op.drop_constraint("api_keys_scopes_known", "api_keys")
    op.drop_index("api_keys_prefix", "api_keys")
    for column in ("last_used_at", "expires_at", "prefix"):
        op.drop_column("api_keys", column)
