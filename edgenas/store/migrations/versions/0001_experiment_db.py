"""The experiment database: runs, their devices, evaluations, fronts, deployment measurements.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("objective", sa.String(128), nullable=False),
        sa.Column("out_dir", sa.Text, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("request", sa.JSON),
        sa.Column("task", sa.JSON, nullable=False),
        sa.Column("n_evaluations", sa.Integer, nullable=False),
        sa.Column("best_number", sa.Integer),
        sa.Column("best_value", sa.Float),
        sa.Column("best_arch", sa.JSON),
        sa.Column("warm_start", sa.JSON),
        sa.Column("rerun_of", sa.String(64)),
    )
    op.create_index("ix_runs_space", "runs", ["space"])
    op.create_table(
        "run_devices",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("fingerprint_hash", sa.String(128)),
        sa.Column("lut_hash", sa.String(128)),
        sa.Column("lut_ref", sa.Text),
        sa.Column("budget_ms", sa.Float),
    )
    op.create_index("ix_run_devices_device", "run_devices", ["device"])
    op.create_table(
        "evaluations",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("arch", sa.JSON, nullable=False),
        sa.Column("objectives", sa.JSON, nullable=False),
        sa.Column("latency_ms", sa.JSON, nullable=False),
        sa.Column("constraints", sa.JSON, nullable=False),
        sa.Column("feasible", sa.Boolean, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("wall_s", sa.Float, nullable=False),
    )
    op.create_table(
        "fronts",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("front", sa.String(128), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("number", sa.Integer, nullable=False),
    )
    op.create_table(
        "measurements",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("fingerprint_hash", sa.String(128), nullable=False),
        sa.Column("lut_fingerprint", sa.String(128)),
        sa.Column("predicted_ms", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
    )
    op.create_index("ix_measurements_fingerprint_hash", "measurements", ["fingerprint_hash"])
    op.create_index("measurements_device_space", "measurements", ["device", "space"])


def downgrade() -> None:
    for name in ("measurements", "fronts", "evaluations", "run_devices", "runs"):
        op.drop_table(name)
