"""Where evaluations run: in this process (default), a local process pool, or a Ray cluster.

An executor maps one evaluator, described by an ``EvalSpec`` (registered name, space, seed, options:
plain JSON, never pickled objects), over architectures given as the space's JSON records, and returns
one float per architecture **in submission order**. Workers rebuild the evaluator from its spec once
per process and evaluate one architecture per task with one torch thread, so a seeded search gives
exactly the same numbers on every executor. Batch-relative evaluators (``ct_prior``, whose score ranks
within the batch) are sent as one task.

``ExecutorEvaluator`` puts an executor behind the ``Evaluator`` interface, so the search loop, the
multi-fidelity driver and benchmarks use it unchanged. Ray is imported lazily (``pip install
edgenas[ray]``); Ray retries a task whose worker died (``max_retries``), so a killed worker costs that
task only, and every ``ray.get`` has a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ProcessPoolExecutor as _Pool
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edgenas.errors import EdgenasError, InputError
from edgenas.evaluate.base import Evaluator, scores_of
from edgenas.quiet import sigint_ignored
from edgenas.registry import Registry


class ExecutorError(EdgenasError):
    """An executor could not run the evaluations (cluster unreachable, task failed after retries)."""

    exit_code = 6


@dataclass(frozen=True)
class EvalSpec:
    """What a worker needs to rebuild an evaluator: plain, hashable, JSON-able."""

    evaluator: str
    space: str
    seed: int = 0
    options_json: str = "{}"

    @classmethod
    def make(cls, evaluator: str, space: str, seed: int = 0,
             options: Mapping[str, Any] | None = None) -> "EvalSpec":
        from edgenas.evaluate.base import check_no_seed

        check_no_seed(evaluator, options or {})
        try:
            text = json.dumps(dict(options or {}), sort_keys=True)
        except TypeError as exc:
            raise InputError(f"evaluator '{evaluator}': options must be plain JSON values ({exc})") from None
        return cls(evaluator, space, int(seed), text)

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.options_json)

    def build(self) -> Evaluator:
        from edgenas.evaluate.base import build_evaluator
        from edgenas.spaces import get_space

        return build_evaluator(self.evaluator, get_space(self.space), self.seed, self.options)


_BUILT: dict[EvalSpec, Evaluator] = {}


def evaluate_records(spec: EvalSpec, records: Sequence[Mapping[str, Any]]) -> list[float]:
    """Evaluate architectures (JSON records) with the spec's evaluator, one torch thread; the worker side.
    An evaluator that runs torch has imported it by the time it is built; a table lookup never loads it."""
    ev = _BUILT.get(spec)
    if ev is None:
        ev = _BUILT[spec] = spec.build()
    archs = [ev.space.from_dict(dict(r)) for r in records]
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch else 0
    if torch:
        torch.set_num_threads(1)
    try:
        scores = scores_of(ev, archs)
    finally:
        if torch:
            torch.set_num_threads(threads)
    return [float(s) if np.isfinite(s) else float("-inf") for s in scores]


def _tasks(spec: EvalSpec, records: list[dict[str, Any]], batch_relative: bool) -> list[list[dict[str, Any]]]:
    return [records] if batch_relative else [[r] for r in records]


class Executor(ABC):
    """Runs ``evaluate_records`` over architectures; results in submission order."""

    name: str = ""

    @abstractmethod
    def map(self, spec: EvalSpec, records: Sequence[Mapping[str, Any]], *,
            batch_relative: bool = False) -> list[float]:
        """One score per record, in the order given."""

    def close(self) -> None:
        """Release workers (idempotent)."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EXECUTORS: Registry[type[Executor]] = Registry("executor", builtins=("edgenas.evaluate.ray_executor",))


@EXECUTORS.register("inprocess", help="evaluate in this process (default)")
class InProcessExecutor(Executor):
    name = "inprocess"

    def __init__(self, **_: Any) -> None:
        pass

    def map(self, spec: EvalSpec, records: Sequence[Mapping[str, Any]], *,
            batch_relative: bool = False) -> list[float]:
        out: list[float] = []
        for task in _tasks(spec, [dict(r) for r in records], batch_relative):
            try:
                out.extend(evaluate_records(spec, task))
            except EdgenasError:
                raise
            except Exception as exc:  # as the process pool and Ray report it (it was an "internal error")
                raise ExecutorError(f"inprocess: an evaluation failed ({type(exc).__name__}: {exc})",
                                    hint="re-run with --resume; finished evaluations are kept") from None
        return out


@EXECUTORS.register("process", help="a local pool of worker processes (--workers N)")
class ProcessExecutor(Executor):
    name = "process"

    def __init__(self, workers: int | None = None, **_: Any) -> None:
        import multiprocessing

        self.workers = _check_workers(workers)
        # spawn: no forked torch thread pools; children get this interpreter's sys.path
        # a command started with Ctrl-C ignored (a background job of a script) keeps it ignored in its workers
        ignored = threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        self._new_pool = lambda: _Pool(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_quiet_worker, initargs=(ignored, os.getpid()))
        self._pool, self._started = self._new_pool(), False

    def map(self, spec: EvalSpec, records: Sequence[Mapping[str, Any]], *,
            batch_relative: bool = False) -> list[float]:
        if not self._started:
            self._start_workers()
        futures = [self._pool.submit(_run_task, spec, t)
                   for t in _tasks(spec, [dict(r) for r in records], batch_relative)]
        out: list[float] = []
        try:
            for f in futures:  # submission order
                try:
                    out.extend(f.result())
                except EdgenasError:
                    raise
                except Exception as exc:  # a worker crashed (BrokenProcessPool) or raised
                    raise ExecutorError(f"process pool: an evaluation failed ({type(exc).__name__}: {exc})",
                                        hint="re-run with --resume; finished evaluations are kept") from None
        except BaseException:  # Ctrl-C, or an evaluation failed: the batch's other results would be dropped
            self._abort()
            raise
        return out

    def _abort(self) -> None:
        """Cancel what has not started and end the workers; a later ``map`` starts new ones. The pool moves
        tasks into its call queue ahead of time, where ``cancel_futures`` cannot reach them: after a Ctrl-C or
        a failed evaluation a worker took one up and the command waited for it to finish (a whole training on
        a ``train`` rung) only to drop its result. The pool's own thread cancels the futures (on Python 3.11
        cancelling one here first made that thread's ``set_exception`` raise ``InvalidStateError``)."""
        for proc in list((getattr(self._pool, "_processes", None) or {}).values()):  # no public way before 3.14
            if proc.is_alive():
                proc.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool, self._started = self._new_pool(), False

    def _start_workers(self) -> None:
        """Start every worker now, with Ctrl-C ignored only while they are spawned (a few milliseconds, once
        per run; a Ctrl-C in them is lost): an ignored signal stays ignored across exec, so a worker still
        importing, before ``_quiet_worker`` runs, does not die with a traceback. The pool spawns no more
        workers later (a worker that dies breaks it), so nothing else runs with Ctrl-C ignored."""
        with sigint_ignored():
            warm = [self._pool.submit(os.getpid) for _ in range(self.workers)]
        try:
            for f in warm:
                f.result()
        except Exception as exc:  # a worker that cannot start (BrokenProcessPool)
            raise ExecutorError(f"process pool: a worker did not start ({type(exc).__name__}: {exc})",
                                hint="check that this Python can start subprocesses") from None
        self._started = True

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "workers": self.workers}


#: in a worker process: whether a task is running (Ctrl-C interrupts a task, never an idle worker)
_RUNNING = False


def _quiet_worker(ignored: bool = False, parent: int | None = None) -> None:
    """In a worker: Ctrl-C (the terminal sends it to the whole process group) interrupts the running task;
    the pool sends the KeyboardInterrupt back to the parent as the task's outcome, which prints nothing, and
    the parent says how to resume. An idle worker ignores it: interrupted while waiting for work, it printed
    a traceback; ended at once, it broke the pool before the parent's own interrupt arrived. ``ignored``:
    the parent ignores Ctrl-C, and so does the worker. ``parent``: the command's process id; the worker
    ends when that process does (``_end_with_parent``). What the worker writes to its standard output goes to
    its standard error: the command's stdout is for its results (``--json``), and a worker's is never one."""
    try:
        os.dup2(2, 1)
    except OSError:  # no standard error to send it to: left as it is
        pass
    if not ignored:
        signal.signal(signal.SIGINT, _on_sigint)
    if parent is not None:
        _end_with_parent(parent)


def _end_with_parent(parent: int) -> None:
    """A worker ends when the command that started it does. Killed (SIGKILL, the OOM killer), the command ran
    no cleanup, and its workers, adopted by init, slept on for good holding torch's memory (and the pipes of
    whoever ran the command). A daemon thread looks for a new parent every second. (Linux's PR_SET_PDEATHSIG
    fires when the parent *thread* that started the worker ends, which need not be the command.)"""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="edgenas-parent-watch", daemon=True).start()


def _on_sigint(*_: Any) -> None:
    if _RUNNING:
        raise KeyboardInterrupt


def _run_task(spec: EvalSpec, records: Sequence[Mapping[str, Any]]) -> list[float]:
    global _RUNNING
    _RUNNING = True
    try:
        return evaluate_records(spec, records)
    finally:
        _RUNNING = False


def max_workers() -> int:
    """The most worker processes on this machine: 4 per core (10,000 spawned interpreters, each
    importing torch, ran the machine out of time and memory)."""
    return 4 * (os.cpu_count() or 1)


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return max(1, min(4, os.cpu_count() or 1))
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= max_workers():
        raise InputError(f"--workers must be an integer from 1 to {max_workers()} (4 per core) on this machine, "
                         f"got {workers!r}")
    return workers


def make_executor(name: str = "inprocess", **options: Any) -> Executor:
    """Build a registered executor (``inprocess``, ``process``, ``ray``) with validated options."""
    return EXECUTORS.get(name)(**options)  # the registry loads ray_executor ("ray"; imports ray lazily)


def executor_names() -> list[str]:
    return EXECUTORS.names()


class ExecutorEvaluator(Evaluator):
    """An evaluator whose scores are computed through an executor (rebuilt in the workers from ``spec``)."""

    def __init__(self, spec: EvalSpec, executor: Executor, local: Evaluator | None = None) -> None:
        self.local = local if local is not None else spec.build()  # validates options here, at once
        _BUILT.setdefault(spec, self.local)  # the in-process executor reuses it
        super().__init__(self.local.space)
        self.spec, self.executor = spec, executor
        self.name, self.metric = self.local.name, self.local.metric
        self.batch_relative = bool(getattr(self.local, "batch_relative", False))

    def report(self, archs: Sequence[Any]) -> dict[str, np.ndarray]:
        """Columns recorded but not optimised (a table lookup): answered in this process."""
        return self.local.report(archs)

    def evaluate(self, archs: Sequence[Any]) -> np.ndarray:
        records = [self.space.to_dict(a) for a in archs]
        return np.asarray(self.executor.map(self.spec, records, batch_relative=self.batch_relative),
                          dtype=float)

    def describe(self) -> dict[str, Any]:
        return self.local.describe()
