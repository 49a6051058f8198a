"""The experiment database's tables (SQLAlchemy Core), as the newest migration leaves them.

* ``runs``: one row per search run: its config and request, the task (dataset, classes, input size,
  samples, meta-features), the space, strategy, status, the chosen architecture and what was
  transferred into it by a warm start; ``run_devices``: per run and device, the fingerprint hash, the
  hash of the LUT (or table column) that predicted its latencies, and the budget;
* ``evaluations``: every evaluation of every run (architecture, objectives, predicted latencies);
* ``fronts``: the Pareto fronts of a run (per device, and ``*`` for all objectives), by trial number;
* ``measurements``: every deployment measurement (the full record as JSON next to filter columns;
  ``lut_fingerprint`` says which LUT made the prediction it is compared with).

Schema changes are Alembic migrations (``edgenas/store/migrations``), never "delete the file".
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("status", sa.String(16), nullable=False),            # running | complete | stopped
    sa.Column("space", sa.String(64), nullable=False, index=True),
    sa.Column("strategy", sa.String(64), nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("objective", sa.String(128), nullable=False),
    sa.Column("out_dir", sa.Text, nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("request", sa.JSON),
    sa.Column("task", sa.JSON, nullable=False),
    sa.Column("n_evaluations", sa.Integer, nullable=False, default=0),
    sa.Column("best_number", sa.Integer),
    sa.Column("best_value", sa.Float),
    sa.Column("best_arch", sa.JSON),
    sa.Column("warm_start", sa.JSON),
    sa.Column("rerun_of", sa.String(64)),
)

run_devices = sa.Table(
    "run_devices", metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("device", sa.String(128), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),               # lut | table
    sa.Column("fingerprint_hash", sa.String(128)),
    sa.Column("lut_hash", sa.String(128)),
    sa.Column("lut_ref", sa.Text),                                  # LUT file or "TABLE#COLUMN"
    sa.Column("budget_ms", sa.Float),
)

evaluations = sa.Table(
    "evaluations", metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("arch", sa.JSON, nullable=False),
    sa.Column("objectives", sa.JSON, nullable=False),
    sa.Column("latency_ms", sa.JSON, nullable=False),
    sa.Column("constraints", sa.JSON, nullable=False),
    sa.Column("feasible", sa.Boolean, nullable=False),
    sa.Column("value", sa.Float),                                   # the primary objective, for sorting
    sa.Column("wall_s", sa.Float, nullable=False),
)

fronts = sa.Table(
    "fronts", metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("front", sa.String(128), primary_key=True),           # a device name, or "*"
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("number", sa.Integer, nullable=False),
)

measurements = sa.Table(
    "measurements", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("device", sa.String(128), nullable=False),
    sa.Column("space", sa.String(64), nullable=False),
    sa.Column("fingerprint_hash", sa.String(128), nullable=False, index=True),
    sa.Column("lut_fingerprint", sa.String(128)),
    sa.Column("predicted_ms", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Index("measurements_device_space", "device", "space"),
)
