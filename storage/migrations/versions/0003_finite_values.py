"""Nothing NaN or out of range reaches storage: CHECK constraints as the last line of defence.

The workers refuse non-finite windows before inference and never build an episode from them; these
constraints make a bug there an `unstorable` dead letter instead of a NaN row that poisons every
average over it. In PostgreSQL NaN compares greater than every number, so `BETWEEN 0 AND 1` is
false for NaN (and for +-Infinity).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHECKS = {
    "window_predictions": {"window_predictions_probability_finite": "probability BETWEEN 0 AND 1"},
    "activity_episodes": {
        "activity_episodes_mean_probability_finite": "mean_probability BETWEEN 0 AND 1",
        "activity_episodes_windows_positive": "windows > 0",
    },
}


def upgrade() -> None:
    for table, checks in CHECKS.items():
        for name, condition in checks.items():
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition})")


def downgrade() -> None:
    for table, checks in CHECKS.items():
        for name in checks:
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
