"""A task for the process-pool tests, importable by the spawned workers (they get the test's sys.path):
it notes that it started (one file per record, in ``EDGENAS_TEST_MARKS``) and sleeps."""

from __future__ import annotations

import os
import time
from pathlib import Path


def slow_task(spec, records):
    for r in records:
        (Path(os.environ["EDGENAS_TEST_MARKS"]) / str(r["n"])).touch()
    time.sleep(3.0)
    return [0.0] * len(records)
