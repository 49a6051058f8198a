"""Search options and data a hostile-input probe found getting through (4 December, second sweep):
infinite or absurd strategy options that failed mid-run, 'false' read as true, a 401-digit --eta,
10,000 worker processes, a port that answers but is no Ray cluster, a bad DARTS --data found after
the run folder was written. Each is now one error line, exit 2 (or 6), and nothing created."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_bad_input import one_line_error

SHARED = Path(__file__).resolve().parents[2].parent / "shared/data/nb201"
TABLE = ["--space", "nb201", "--table", str(SHARED / "nb201_hw.csv"), "--budget", "40"]


@pytest.mark.parametrize("args, fragment", [
    (["--strategy", "hgm", "--strategy-opt", "learn_rate=inf"], "learn_rate=inf is not a finite number"),
    (["--strategy", "woa", "--strategy-opt", "b=1e308"], "b=1e+308 must be in (0, 100]"),
    (["--strategy", "ri-iwoa", "--strategy-opt", "b=inf"], "is not a finite number"),
    (["--strategy", "tpe", "--strategy-opt", "multivariate=maybe"], "multivariate='maybe' is not true or false"),
    (["--strategy", "evolution", "--strategy-opt", "population=5.5"], "population=5.5 is not an integer"),
    (["--executor", "process", "--workers", "10000"], "--workers must be an integer from 1 to"),
    # a population allocated up front: 10**12 was a 43.7 TiB array (exit 70); CMA-ES's popsize never asked
    (["--strategy", "woa", "--population", "1000000000000"], "population=1000000000000 must be from 2 to 100000"),
    (["--strategy", "ri-iwoa", "--strategy-opt", "population=100001"], "population=100001 must be from 2 to 100000"),
    (["--strategy", "cmaes", "--strategy-opt", "popsize=100001"], "popsize=100001 must be from 2 to 100000"),
    (["--strategy", "nsga2", "--population", "100001"], "population=100001 must be from 4 to 100000"),
    # more objectives than the search has: every trial failed and the study sampled at random (10**12: MemoryError)
    (["--strategy", "tpe", "--strategy-opt", "n_objectives=2"],
     "n_objectives=2 is more than the search's 1 objective(s) (cifar10_test)"),
    (["--strategy", "gp", "--strategy-opt", "n_objectives=1000000000000"], "is more than the search's 1 objective"),
    # CMA-ES optimises one scalar: n_objectives=2 was accepted and did nothing
    (["--strategy", "cmaes", "--strategy-opt", "n_objectives=2"], "option n_objectives=2 must be 1: cmaes optimises one "
                                                                   "scalar (tpe, gp or optuna-nsga2 optimise several)"),
])
def test_a_strategy_or_executor_option_that_would_fail_mid_run_is_refused_first(fresh, cli, args, fragment):
    one_line_error(cli("search", *TABLE, *args, "--out", "r"), fragment)
    assert sorted(p.name for p in fresh.iterdir()) == []


def test_false_spelled_out_turns_a_flag_off(fresh):
    from edgenas.search.optuna_samplers import TPE

    for text, want in (("false", False), ("0", False), ("no", False), ("True", True), ("1", True)):
        assert TPE.validate_options({"multivariate": text})["multivariate"] is want


def test_an_eta_of_401_digits_is_one_line(fresh, cli):
    valid = SHARED / "nb201_valid.csv"
    ladder = ["--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
              "--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid,cost=2"]
    res = cli("search", "--space", "nb201", "--strategy", "hyperband", "--budget", "9", *ladder,
              "--eta", "1" + "0" * 400, "--out", "r")
    one_line_error(res, "must be from 2 to 1000")
    assert not (fresh / "r").exists()


def test_a_port_that_answers_but_is_no_ray_cluster_is_one_line_at_once(fresh, cli):
    """An HTTP server: Ray retried for minutes and printed dozens of its C++ log lines."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer():
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            conn.sendall(b"HTTP/1.0 400 Bad request\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    res = cli("search", *TABLE[:4], "--budget", "5", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
              "--out", "r")
    server.close()
    one_line_error(res, "answers, but not as a ray cluster")
    assert not (fresh / "r").exists()


def test_a_bad_darts_dataset_is_refused_before_the_run_folder(fresh, cli, tmp_path):
    """The run folder was written first, and then blocked the same --out."""
    np.savez(tmp_path / "mm.npz", x=np.zeros((40, 8, 8, 3), np.uint8), y=np.zeros(30, np.int64))
    for data, fragment in ((tmp_path / "mm.npz", "one label per image"), (tmp_path / "nope.npz", "does not exist")):
        res = cli("search", "--space", "nb201", "--strategy", "darts", "--data", str(data), "--epochs", "1",
                  "--out", "d")
        one_line_error(res, fragment)
        assert sorted(p.name for p in fresh.iterdir()) == []


@pytest.mark.parametrize("args, fragment", [
    # the flags overwrote these, and request.json recorded them as if they were used
    (TABLE + ["--eval-opt", "objective=cifar100_test"], "--eval-opt objective of the tabular evaluator"),
    (TABLE + ["--eval-opt", "table=/dev/zero"], "--eval-opt table of the tabular evaluator"),
    (["--space", "nb201", "--objective", "cifar100_test", "--budget", "3"], "without --table it would be ignored"),
    # a budget with no device nor latency column: the search ran unconstrained, and said nothing
    (["--space", "nb201", "--budget", "3", "--max-latency-ms", "5"], "a latency budget needs a device"),
    (["--space", "nb201", "--budget", "3", "--max-latency-quantile", "0.5"], "a latency budget needs a device"),
])
def test_settings_a_search_would_ignore_are_refused(fresh, cli, args, fragment):
    one_line_error(cli("search", *args, "--out", "r"), fragment)
    assert sorted(p.name for p in fresh.iterdir()) == []


def test_a_latency_column_of_a_partial_table_is_refused_before_the_run(fresh, cli, tmp_path):
    """29 rows: the search stopped at the first architecture the table lacked, its run folder and
    database row written."""
    part = tmp_path / "part.csv"
    part.write_text("".join((SHARED / "nb201_hw.csv").read_text().splitlines(keepends=True)[:30]))
    res = cli("search", "--space", "nb201", "--table", str(part), "--latency-column", "raspi4_ms", "--budget", "5",
              "--out", "r")
    one_line_error(res, "15,596 of the space's 15,625 architectures are not in the table")
    assert sorted(p.name for p in fresh.iterdir()) == []


def test_latency_budgets_are_none_one_for_all_or_one_per_device():
    from edgenas.errors import InputError
    from edgenas.search.launch import SearchRequest, _budgets

    def req(**kw):
        return SearchRequest(space="nb201", **kw)

    assert _budgets(req(), ["a", "b"]) == [None, None]
    assert _budgets(req(max_latency_ms=(5.0,)), ["a", "b"]) == [5.0, 5.0]
    assert _budgets(req(max_latency_ms=(5.0, 7.5)), ["a", "b"]) == [5.0, 7.5]
    with pytest.raises(InputError, match="2 latency budgets for 3 devices") as exc:
        _budgets(req(max_latency_ms=(5.0, 7.5)), ["a", "b", "c"])
    assert exc.value.hint == "give one --max-latency-ms per --device, in the same order, or one for all"
    with pytest.raises(InputError, match="2 latency budgets for 1 devices") as exc:
        _budgets(req(max_latency_ms=(5.0, 7.5), latency_column="raspi4_ms"), ["raspi4_ms"])
    assert "--device (and --latency-column, which is one table column)" in exc.value.hint
    with pytest.raises(InputError, match="either --max-latency-ms or --max-latency-quantile, not both"):
        _budgets(req(max_latency_ms=(5.0,), max_latency_quantile=0.5), ["a"])
