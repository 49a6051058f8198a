"""Ray drivers that run in a Python process of their own (``run_as_driver``), never in pytest's.

A driver keeps Ray's native GCS client and its threads after ``ray.shutdown()``, and Ray's C++ core ends the
process with ``_Exit(1)``, printing nothing on the terminal, when something reaches the core worker after the
shutdown (ray-project/ray#65184 fixed one such path, a poll in ``check_signals``). In CI that ended the whole test
run about 70 tests after the Ray tests: exit 1, no failure, no summary. In a child process it can only end the
child, and the test says so with the child's output.

The cases below are plain functions: ``run_as_driver("NAME", address)`` runs ``NAME(address)`` in a fresh
interpreter (this module imported as ``ray_cases``, pickled by value so the cluster's workers need not import
tests/) and fails with the child's stderr unless it returned."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgenas.evaluate.executor import EvalSpec, ExecutorError

_PASSED = "ray case passed"


def run_as_driver(case: str, *args: str, timeout_s: float = 300.0) -> None:
    code = (f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nimport ray_cases\n"
            f"ray_cases._main({case!r}, {args!r})\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    assert res.returncode == 0 and res.stdout.endswith(_PASSED + "\n"), \
        f"the driver of {case} exited {res.returncode}:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"


def _main(case: str, args: tuple[str, ...]) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    globals()[case](*args)
    sys.stdout.write(_PASSED + "\n")
    sys.stdout.flush()
    os._exit(0)  # the case passed: nothing Ray left behind gets to decide this process's exit status


def titled(prefix: bytes) -> list[int]:
    """The processes whose command line starts with ``prefix`` (Ray titles a worker ``ray::FUNCTION``)."""
    pids = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and Path(entry.path, "cmdline").read_bytes().startswith(prefix):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def gone(prefix: bytes, timeout_s: float = 30.0) -> bool:
    """No process titled ``prefix`` is left within ``timeout_s`` (a loaded 2-core machine took over 10 s)."""
    deadline = time.monotonic() + timeout_s
    while titled(prefix) and time.monotonic() < deadline:
        time.sleep(0.2)
    return titled(prefix) == []


def _tenfold(spec, records):
    return [10.0 * r["n"] for r in records]


def _sleep_then(spec, records):
    """Record 0 with ``exit`` ends its worker process (Ray's worker-lost error, not the task's own) and
    with ``raise`` raises in the task; every other record sleeps far longer than any test waits."""
    if records[0]["n"] == 0 and records[0].get("exit"):
        time.sleep(0.5)
        os._exit(1)
    if records[0]["n"] == 0 and records[0].get("raise"):
        time.sleep(1.0)
        raise RuntimeError("boom in a task")
    time.sleep(300.0)
    return [0.0]


def failed_evaluation_cancels_the_batch(address: str) -> None:
    """The batch's results are dropped when one task fails; its other tasks (each a training) went on holding
    the cluster's CPUs. The failed task itself is not cancelled (in Ray 2.60 that can abort the driver: its
    error is visible before its reply is handled), and a cancel that Ray drops (it does, for a queued task
    pushed to a worker as the cancel arrives) is sent again: here the first cancel of task 1 is dropped."""
    import ray

    from edgenas.evaluate.ray_executor import RayExecutor

    ex = RayExecutor(address, max_retries=0)
    remote = ray.remote(num_cpus=1, max_retries=0, retry_exceptions=False)(_sleep_then)
    refs, cancels, real_cancel = [], [], ray.cancel

    class Recorded:
        @staticmethod
        def remote(*args):
            refs.append(remote.remote(*args))
            return refs[-1]

    def cancel(ref, **kwargs):
        cancels.append(ref)
        if ref != refs[1] or cancels.count(ref) > 1:
            real_cancel(ref, **kwargs)

    ray.cancel = cancel  # the executor calls ray.cancel through the module: this is the one it gets
    try:
        ex._remote = Recorded
        t0 = time.monotonic()
        with pytest.raises(ExecutorError, match="not retried: it raised.*boom in a task"):
            ex.map(EvalSpec.make("compression", "nb201"), [{"n": i, "raise": True} for i in range(4)])
        assert time.monotonic() - t0 < 20.0
        assert gone(b"ray::_sleep_then"), "the batch's other tasks went on running"
        assert refs[0] not in cancels, "the task that failed was cancelled"
        assert cancels.count(refs[1]) >= 2, "the dropped cancel was not sent again"
        assert refs[2] in cancels and refs[3] in cancels
    finally:
        ray.cancel = real_cancel
        ex.close()


def timeout_or_lost_worker_is_one_error(address: str) -> None:
    """A batch past its timeout, or one whose worker dies: one ExecutorError saying which, the batch's other
    tasks cancelled; a second executor joins the connection and leaves it open; ``close`` shuts Ray down."""
    import ray

    from edgenas.evaluate.ray_executor import RayExecutor

    ex = RayExecutor(address, workers=2, max_retries=0, timeout_s=120.0)  # workers: a local head's only
    try:
        assert ex.describe() == {"name": "ray", "address": address, "max_retries": 0}
        assert ray.get_runtime_context().runtime_env.get("py_modules"), "edgenas was not shipped with the job"
        joined = RayExecutor(address)  # Ray is up already: it uses that connection and leaves it open
        assert joined.describe()["max_retries"] == 3 and joined.timeout_s == 3600.0
        joined.close()
        assert ray.is_initialized()
        ex._remote = ray.remote(num_cpus=1, max_retries=0, retry_exceptions=False)(_tenfold)
        spec = EvalSpec.make("compression", "nb201")
        for batch_relative in (False, True):  # a task per record, or the batch as one: in submission order
            assert ex.map(spec, [{"n": i} for i in range(4)], batch_relative=batch_relative) == [0.0, 10.0, 20.0, 30.0]
        ex._remote = ray.remote(num_cpus=1, max_retries=0, retry_exceptions=False)(_sleep_then)
        ex.timeout_s = 1.5
        t0 = time.monotonic()
        with pytest.raises(ExecutorError, match=r"ray: evaluations did not finish within 1.5 s \(raise the timeout"):
            ex.map(spec, [{"n": i} for i in range(3)])
        assert time.monotonic() - t0 < 15.0
        assert gone(b"ray::_sleep_then"), "a timed-out batch's tasks went on running"

        ex.timeout_s = 60.0
        with pytest.raises(ExecutorError, match=r"ray: an evaluation failed after 0 retries \(") as err:
            ex.map(spec, [{"n": i, "exit": True} for i in range(2)])
        assert "not retried" not in str(err.value)
        assert gone(b"ray::_sleep_then"), "the batch's other task went on running"
    finally:
        ex.close()
    assert not ray.is_initialized()
    ex.close()  # a second close is a no-op
