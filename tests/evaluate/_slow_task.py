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


def pid_task(spec, records):
    """The worker's process id, at once (the pool's own task function is not run)."""
    return [float(os.getpid())] * len(records)


def interruptible_task(spec, records):
    """The executor's own task function, its evaluation a sleep (6 s, or the first record's ``sleep_s``): Ctrl-C in
    the worker interrupts it."""
    from edgenas.evaluate import executor

    def sleep(spec, records):
        time.sleep(float(records[0].get("sleep_s", 6.0)))
        return [0.0] * len(records)

    executor.evaluate_records = sleep  # in this worker only
    return executor._run_task(spec, records)


def input_error_task(spec, records):
    """An evaluation that finds bad input (an EdgenasError) in the worker."""
    from edgenas.errors import InputError

    raise InputError("no such table row")


def crashing_task(spec, records):
    """An evaluation that fails in the worker with an error that is not an EdgenasError."""
    raise RuntimeError("boom in the worker")


def failing_first_task(spec, records):
    """Record 0 fails at once; the others note that they started and sleep (as ``slow_task``)."""
    if records[0]["n"] == 0:
        raise RuntimeError("boom at once")
    return slow_task(spec, records)
