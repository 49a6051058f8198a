"""Executors: the same scores, in submission order, in-process, in a process pool and on a real Ray head."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.evaluate.executor import EvalSpec, ExecutorEvaluator, make_executor
from edgenas.spaces import get_space
from tests.evaluate.ray_cases import run_as_driver, titled


def _archs(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


@pytest.mark.slow
def test_process_pool_gives_the_in_process_scores_in_submission_order():
    space = get_space("mbv3-tiny")
    archs = _archs(space, 3)
    spec = EvalSpec.make("compression", "mbv3-tiny", 0, {"batch_size": 16})
    with make_executor("inprocess") as ex:
        base = ExecutorEvaluator(spec, ex).evaluate(archs)
    assert len(set(base.tolist())) == 3  # distinct scores, so the order below is checked
    with make_executor("process", workers=2) as ex:
        ev = ExecutorEvaluator(spec, ex)
        assert ev.evaluate(archs).tolist() == base.tolist()
        assert ev.evaluate(archs[::-1]).tolist() == base[::-1].tolist()


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # no traceback from a thread
def test_ctrl_c_ends_the_process_pool_without_starting_queued_evaluations(tmp_path, monkeypatch):
    """The pool moves tasks into its call queue ahead of time, where cancel_futures cannot reach them: after a
    Ctrl-C a worker took one up and the command waited for it to finish (a whole training on a train rung)."""
    from edgenas.evaluate import executor

    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the workers are spawned with this sys.path
    from _slow_task import slow_task

    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("EDGENAS_TEST_MARKS", str(marks))
    monkeypatch.setattr(executor, "_run_task", slow_task)
    # Ctrl-C as a terminal delivers it, whatever this test run inherited (a background job ignores it)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ex = make_executor("process", workers=1)
        ex._start_workers()
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            ex.map(EvalSpec.make("compression", "nb201"), [{"n": i} for i in range(4)])
        ex.close()
    finally:
        signal.signal(signal.SIGINT, previous)
    time.sleep(4.0)  # long enough for a queued task to have started and noted it
    assert sorted(p.name for p in marks.iterdir()) == ["0"]


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # no traceback from a thread
def test_a_failed_evaluation_ends_the_pools_queued_and_running_ones_and_the_next_batch_gets_new_workers(
        tmp_path, monkeypatch):
    """The batch's results are dropped when one evaluation fails: the command waited for the queued and running
    ones (each a whole training on a ``train`` rung) before it said so."""
    from edgenas.evaluate import executor

    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the workers are spawned with this sys.path
    from _slow_task import failing_first_task, pid_task

    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("EDGENAS_TEST_MARKS", str(marks))
    spec = EvalSpec.make("compression", "nb201")
    with make_executor("process", workers=1) as ex:
        ex._start_workers()
        monkeypatch.setattr(executor, "_run_task", failing_first_task)
        with pytest.raises(executor.ExecutorError, match="boom at once"):
            ex.map(spec, [{"n": i} for i in range(4)])
        time.sleep(4.0)  # long enough for the queued task after the running one to have started and noted it
        assert {p.name for p in marks.iterdir()} <= {"1"}  # the one worker may have taken record 1 up already
        monkeypatch.setattr(executor, "_run_task", pid_task)
        assert ex.map(spec, [{"n": 5}])[0] > 0  # new workers


def test_an_evaluation_that_raises_is_one_executor_error_in_process_too(monkeypatch):
    """In process it was an "internal error: ... report it" (exit 70); the process pool and Ray say
    ExecutorError with the resume hint."""
    from edgenas.evaluate import executor

    def boom(spec, records):
        raise RuntimeError("boom")

    monkeypatch.setattr(executor, "evaluate_records", boom)
    with pytest.raises(executor.ExecutorError, match="inprocess: an evaluation failed .*boom"):
        make_executor("inprocess").map(EvalSpec.make("compression", "nb201"), [{"n": 0}])


def test_relative_paths_reach_an_executors_workers_absolute(tmp_path, monkeypatch):
    """A Ray worker resolves evaluator options in its own folder (the head's): table=d2/x.csv was not found."""
    import shutil

    from edgenas.evaluate.executor import make_executor
    from edgenas.project import Project
    from edgenas.search.launch import SearchRequest, build_problem

    table = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"
    if not table.exists():
        pytest.skip(f"reference table not found at {table}")
    (tmp_path / "here" / "d2").mkdir(parents=True)
    shutil.copy(table, tmp_path / "here" / "d2" / "hw.csv")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    req = SearchRequest(space="nb201", table="d2/hw.csv", objective="cifar10_test", budget=5)
    problem, _ = build_problem(Project(tmp_path / "proj"), req, executor=make_executor("inprocess"))
    spec = problem.evaluator.inner.spec  # what a worker gets
    assert spec.options["table"] == str(tmp_path / "here" / "d2" / "hw.csv")
    monkeypatch.chdir(tmp_path / "elsewhere")  # where a Ray worker would look: a new process builds it anew
    assert spec.build().evaluate([get_space("nb201").sample(np.random.default_rng(0))])[0] > 0


def test_bad_executor_options_are_one_clear_error():
    with pytest.raises(InputError, match="unknown executor 'nope'"):
        make_executor("nope")
    with pytest.raises(InputError, match="--workers"):
        make_executor("process", workers=0)
    with pytest.raises(InputError, match="options must be plain JSON"):
        EvalSpec.make("compression", "mbv3-tiny", 0, {"x": object()})


def test_workers_by_default_and_at_their_bounds(monkeypatch):
    from edgenas.evaluate import executor

    for cpus, default, most in ((8, 4, 32), (2, 2, 8), (None, 1, 4)):
        monkeypatch.setattr(executor.os, "cpu_count", lambda: cpus)
        assert executor._check_workers(None) == default and executor.max_workers() == most
        assert executor._check_workers(1) == 1 and executor._check_workers(most) == most
        for bad in (0, most + 1, True, 2.0, "2"):
            with pytest.raises(InputError, match=f"--workers must be an integer from 1 to {most} "):
                executor._check_workers(bad)


def test_in_process_scores_come_in_order_one_task_per_architecture_or_one_batch(monkeypatch):
    """NaN and infinities come back as -inf; a batch-relative evaluator gets the whole batch in one task, any
    other one architecture per task, run with one torch thread."""
    import torch

    from edgenas.evaluate import executor
    from edgenas.evaluate.base import Evaluator

    space = get_space("nb201")
    archs = _archs(space, 4)
    ids = [space.arch_id(a) for a in archs]
    values = dict(zip(ids, [1.5, np.nan, np.inf, -2.0]))

    class Fake(Evaluator):
        name, metric = "fake", "fake score"

        def __init__(self, batch_relative):
            super().__init__(space)
            self.batch_relative, self.batches = batch_relative, []

        def evaluate(self, batch):
            self.batches.append(([space.arch_id(a) for a in batch], torch.get_num_threads()))
            return np.array([values[space.arch_id(a)] for a in batch])

        def report(self, batch):
            return {"n": np.array([len(batch)])}

    monkeypatch.setattr(executor, "_BUILT", {})
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for batch_relative, tasks in ((False, [[i] for i in ids]), (True, [ids])):
            local = Fake(batch_relative)
            ev = ExecutorEvaluator(EvalSpec(f"fake-{batch_relative}", "nb201"), make_executor("inprocess"), local)
            assert ev.evaluate(archs).tolist() == [1.5, -np.inf, -np.inf, -2.0] and torch.get_num_threads() == 2
            assert local.batches == [(t, 1) for t in tasks]
            assert (ev.name, ev.metric, ev.batch_relative, ev.space) == ("fake", "fake score", batch_relative, space)
            assert ev.report(archs)["n"].tolist() == [4] and ev.describe() == {"name": "fake", "metric": "fake score"}
    finally:
        torch.set_num_threads(threads)
    plain = Fake(False)
    del plain.batch_relative                              # an evaluator that says nothing of it is not batch-relative
    assert ExecutorEvaluator(EvalSpec("fake-plain", "nb201"), make_executor("inprocess"), plain).batch_relative is False
    spec = EvalSpec.make("compression", "nb201", 3.0, {"b": 1, "a": [2]})
    assert (spec.seed, spec.options_json, spec.options) == (3, '{"a": [2], "b": 1}', {"a": [2], "b": 1})


def _log(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "evaluations.jsonl").read_text().splitlines()]
    for rec in lines:
        rec.pop("wall_s")
    return lines


@pytest.mark.slow
def test_ray_search_survives_a_killed_worker_and_matches_in_process(ray_head, cli, tmp_path, monkeypatch):
    """The Ray search runs as a command of its own (its driver never in this process, see ``ray_cases``)."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "proj"))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    args = ["search", "--space", "mbv3-tiny", "--strategy", "random", "--budget", "4", "--seed", "1",
            "--evaluator", "train", "--eval-opt", "epochs=1", "--eval-opt", "limit=400", "--json"]
    r = cli(*args, "--out", str(tmp_path / "local"))
    assert r.code == 0, r.err

    killed: list[int] = []

    def killer() -> None:  # kill -9 the first worker seen running an evaluation
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            for pid in titled(b"ray::evaluate_records"):
                time.sleep(0.3)  # well into the evaluation
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    continue
                break
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    res = subprocess.run([sys.executable, "-m", "edgenas", *args, "--out", str(tmp_path / "ray"), "--executor", "ray",
                          "--ray-address", ray_head.address], capture_output=True, text=True, timeout=300)
    t.join(timeout=5)
    assert res.returncode == 0, res.stderr[-3000:]
    # stdout is the JSON document alone: Ray's driver printed the lost worker's error there, from a thread
    assert json.loads(res.stdout)["evaluations"] == 4, res.stdout[-3000:]
    assert "Traceback" not in res.stderr
    assert killed, "no Ray worker was seen evaluating"
    assert _log(tmp_path / "ray") == _log(tmp_path / "local")
    assert json.loads((tmp_path / "ray" / "best.json").read_text())["arch"] == \
        json.loads((tmp_path / "local" / "best.json").read_text())["arch"]


@pytest.mark.slow
def test_a_failed_ray_evaluation_cancels_the_batchs_other_tasks(ray_head):
    run_as_driver("failed_evaluation_cancels_the_batch", ray_head.address)


def test_unreachable_ray_address_is_one_red_line(cli, tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="Ray is not installed")
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "proj"))
    r = cli("search", "--space", "mbv3-tiny", "--budget", "2", "--executor", "ray",
            "--ray-address", "127.0.0.1:1", "--out", str(tmp_path / "run"))
    assert r.code != 0
    assert "Ray cluster at 127.0.0.1:1" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "run").exists()


def test_a_spec_made_without_seed_or_options_and_one_given_seed_as_an_option(monkeypatch):
    """The seed defaults to 0 whichever way a spec is made; ``seed`` among the options is refused when the spec
    is made, before any worker rebuilds it."""
    assert EvalSpec("compression", "nb201") == EvalSpec.make("compression", "nb201") == \
        EvalSpec("compression", "nb201", 0, "{}")
    with pytest.raises(InputError, match="evaluator 'compression': seed is not an evaluator option"):
        EvalSpec.make("compression", "nb201", 1, {"seed": 2})


def test_the_in_process_executor_as_a_context_and_its_defaults(monkeypatch):
    """Called directly, ``map`` runs one architecture per task; an EdgenasError of an evaluation reaches the
    caller as it is (it says what to do), not as an ExecutorError; ``with`` gives the executor itself."""
    from edgenas.evaluate import executor
    from edgenas.evaluate.base import Evaluator

    space = get_space("nb201")
    archs = _archs(space, 3)
    ids = [space.arch_id(a) for a in archs]

    class Fake(Evaluator):
        name, metric = "fake", "fake score"

        def __init__(self):
            super().__init__(space)
            self.batches = []

        def evaluate(self, batch):
            if any(space.arch_id(a) == ids[2] for a in batch):
                raise InputError("no such table row")
            self.batches.append([space.arch_id(a) for a in batch])
            return np.arange(len(batch), dtype=float)

    fake, spec = Fake(), EvalSpec("fake-direct", "nb201")
    monkeypatch.setattr(executor, "_BUILT", {spec: fake})
    with make_executor("inprocess") as ex:
        assert isinstance(ex, executor.InProcessExecutor) and ex.describe() == {"name": "inprocess"}
        assert ex.map(spec, [space.to_dict(a) for a in archs[:2]]) == [0.0, 0.0]
        assert fake.batches == [[ids[0]], [ids[1]]]
        with pytest.raises(InputError, match="no such table row"):
            ex.map(spec, [space.to_dict(a) for a in archs])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_a_process_pool_worker_writes_to_the_commands_stderr_not_its_stdout():
    """A worker's writes to file descriptor 1 (a library's print, a C extension's message) went into the
    command's stdout, before or inside its --json output; the search's redirect covers only this process."""
    script = ("import os, sys\n"
              "from edgenas.evaluate.executor import make_executor\n"
              "with make_executor('process', workers=1) as ex:\n"
              "    ex._start_workers()\n"
              "    ex._pool.submit(os.write, 1, b'FROM-THE-WORKER\\n').result()\n"
              "    ex._pool.submit(print, 'PRINTED-IN-THE-WORKER').result()\n"
              "print('{\"ok\": true}')\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == '{"ok": true}\n', res.stdout
    assert "FROM-THE-WORKER" in res.stderr and "PRINTED-IN-THE-WORKER" in res.stderr, res.stderr


def test_leaving_a_process_pool_ends_its_workers_and_an_idle_worker_takes_no_cpu():
    """``with make_executor("process")``: the workers are gone when the block is left. An idle worker (its
    thread that watches for the parent's end included) uses next to no CPU."""
    with make_executor("process", workers=1) as ex:
        assert ex.describe() == {"name": "process", "workers": 1}
        ex._start_workers()
        procs = list(ex._pool._processes.values())  # no public way before 3.14
        assert len(procs) == 1 and procs[0].is_alive()
        time.sleep(0.5)
        used = _cpu_s(procs[0].pid)
        time.sleep(2.0)
        assert _cpu_s(procs[0].pid) - used < 0.2
    assert not procs[0].is_alive()


def test_ctrl_c_in_the_workers_interrupts_a_running_evaluation_and_no_idle_worker(monkeypatch):
    """The first map starts every worker; Ctrl-C (the terminal sends it to the workers too) leaves an idle
    worker as it was, and ends an evaluation that runs, the parent getting the KeyboardInterrupt."""
    from edgenas.evaluate import executor

    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the workers are spawned with this sys.path
    from _slow_task import interruptible_task, pid_task

    def ctrl_c(pids):
        for pid in pids:
            os.kill(pid, signal.SIGINT)

    spec = EvalSpec.make("compression", "nb201")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal delivers it
    try:
        monkeypatch.setattr(executor, "_run_task", pid_task)
        with make_executor("process", workers=2) as ex:
            pid = ex.map(spec, [{"n": 0}])[0]
            procs = list(ex._pool._processes.values())  # no public way before 3.14
            assert len(procs) == 2 and int(pid) in {p.pid for p in procs}
            ctrl_c(p.pid for p in procs)
            time.sleep(1.0)
            assert all(p.is_alive() for p in procs)
            monkeypatch.setattr(executor, "_run_task", interruptible_task)
            threading.Timer(1.5, ctrl_c, ([p.pid for p in procs],)).start()
            t0 = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                ex.map(spec, [{"n": 1}])
            assert time.monotonic() - t0 < 5.0
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a command run with Ctrl-C ignored: its workers ignore it too
        with make_executor("process", workers=1) as ex:
            ex._start_workers()
            threading.Timer(1.0, ctrl_c, (list(ex._pool._processes),)).start()
            try:
                result = ex.map(spec, [{"n": 2, "sleep_s": 2.5}])
            except KeyboardInterrupt:  # not out of the test: pytest would stop
                result = "interrupted"
            assert result == [0.0]
    finally:
        signal.signal(signal.SIGINT, previous)


_WORKERS_CANNOT_START = """
import sys
if __name__ != "__main__":  # a spawned worker imports this script first: here it cannot
    sys.exit(3)
from edgenas.errors import EdgenasError
from edgenas.evaluate.executor import EvalSpec, ProcessExecutor
try:
    ProcessExecutor(workers=1).map(EvalSpec.make("compression", "nb201"), [{"n": 0}])
except EdgenasError as exc:
    print(exc, exc.hint, sep="\\n")
"""


def test_a_process_pool_whose_workers_cannot_start_says_so(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(_WORKERS_CANNOT_START)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    assert res.stdout.startswith("process pool: a worker did not start (BrokenProcessPool"), res.stdout + res.stderr
    assert "check that this Python can start subprocesses" in res.stdout


def test_an_edgenas_error_in_a_pool_worker_reaches_the_caller_as_it_is(monkeypatch):
    """It says what to do; wrapped as "an evaluation failed" it would not."""
    from edgenas.evaluate import executor

    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the workers are spawned with this sys.path
    from _slow_task import crashing_task, input_error_task

    monkeypatch.setattr(executor, "_run_task", input_error_task)
    with make_executor("process", workers=1) as ex:
        with pytest.raises(InputError, match="no such table row"):
            ex.map(EvalSpec.make("compression", "nb201"), [{"n": 0}])
        monkeypatch.setattr(executor, "_run_task", crashing_task)  # any other error: one ExecutorError
        with pytest.raises(executor.ExecutorError, match=r"process pool: an evaluation failed \(RuntimeError: boom"):
            ex.map(EvalSpec.make("compression", "nb201"), [{"n": 0}])
