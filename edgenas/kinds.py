"""What a value of a search run's record may be: the predicates the run folder's checks
(``search/run_files.py``) and the experiment database's reader (``store/rows.py``) share.

Both sides must agree: ``runs import`` once stored a budget of -5 ms and a ``rerun_of`` of ``../../etc``
that the reader then called a damaged row, failing ``runs stale`` and ``--warm-start auto`` for every
run, and re-importing recreated the row. A value one side accepts, the other now accepts too.
This module imports nothing heavy (no SQLAlchemy), so the run folder's readers stay light.
"""

from __future__ import annotations

import re
from typing import Any

from edgenas.limits import is_finite, is_number

#: what a run id is (``search.record.run_id_for``: 12 hex digits; any length up to the column's)
RUN_ID_RE = re.compile(r"[0-9a-f]{1,64}\Z")


def is_run_id(v: Any) -> bool:
    return isinstance(v, str) and bool(RUN_ID_RE.match(v))


def is_budget_ms(v: Any) -> bool:
    """A latency budget in ms: a finite number from 0."""
    return is_finite(v) and v >= 0


def is_scores(v: Any) -> bool:
    """An object of numbers (null: a NaN or an infinity, stored as null)."""
    return isinstance(v, dict) and all(isinstance(k, str) and (x is None or is_number(x)) for k, x in v.items())


def is_warm_start(v: Any) -> bool:
    """What ``search.warmstart`` records: ``transferred`` objects with an ``arch``, ``candidates`` with
    their similarities, ``note`` and ``rerun_of`` text (the run row's ``rerun_of`` column, taken from it, must
    be a run id: ``is_run_id``)."""
    if not isinstance(v, dict):
        return False
    moved, cands = v.get("transferred", []), v.get("candidates", [])
    return (isinstance(moved, list) and all(isinstance(t, dict) and isinstance(t.get("arch"), dict) for t in moved)
            and isinstance(cands, list)
            and all(isinstance(c, dict) and isinstance(c.get("run_id"), str) and isinstance(c.get("used"), bool)
                    and all(is_finite(c.get(k)) for k in ("similarity", "task_similarity", "device_similarity"))
                    for c in cands)
            and all(v.get(k) is None or isinstance(v[k], str) for k in ("note", "rerun_of")))
