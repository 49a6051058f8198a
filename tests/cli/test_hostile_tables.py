"""Latency tables an attacker or an accident can hand ``device add --fewshot K --table`` and ``search --table``:
a FIFO, a device file, an oversized file, latencies of 1e300 or 1e-320 ms, thousands of latency columns, a
repeated column. Each is one error line (exit 2) before anything is measured or created, or, for values
that are no latency, the rows left out like missing ones, with no numpy warning (hostile-input probe,
4 December)."""

from __future__ import annotations

import os
import signal
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_bad_input import one_line_error

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT.parent / "shared/data/nb201/nb201_hw.csv"


def _good_rows(n: int = 400) -> list[str]:
    """``index, arch, raspi4_ms, pixel3_ms, gold_6226_ms`` of the first ``n`` cells of ``nb201_hw.csv``."""
    if not TABLE.exists():
        pytest.skip(f"reference table not found at {TABLE}")
    with open(TABLE) as fh:
        lines = [next(fh) for _ in range(n + 1)]
    return [",".join(f for i, f in enumerate(line.rstrip("\n").split(",")) if i in (0, 1, 5, 6, 7)) for line in lines]


def _commands(table: Path) -> list[tuple[str, ...]]:
    return [("device", "add", "local", "--fewshot", "3", "--space", "nb201", "--table", str(table)),
            ("search", "--space", "nb201", "--table", str(table), "--objective", "cifar10_test",
             "--latency-column", "raspi4_ms", "--max-latency-ms", "20", "--budget", "4", "--out", "run")]


@contextmanager
def _no_hang(seconds: int = 60):
    """A command still running after ``seconds`` fails the test instead of blocking it for ever."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("kind, fragment", [
    ("fifo", "is not a regular file"),       # blocked in open() for ever
    ("device", "is not a regular file"),     # /dev/zero: read for ever
    ("link", "is not a regular file"),       # a link to /dev/zero: filled the memory
    ("folder", "is a folder, not a file"),
])
def test_a_table_that_is_no_regular_file_is_one_line_not_a_hang(fresh, cli, tmp_path, kind, fragment):
    table = tmp_path / "t.csv"
    if kind == "fifo":
        os.mkfifo(table)
    elif kind == "device":
        table = Path("/dev/zero")
    elif kind == "link":
        table.symlink_to("/dev/zero")
    else:
        table.mkdir()
    for args in _commands(table):
        with _no_hang():
            one_line_error(cli(*args), fragment)
    assert list(fresh.iterdir()) == []


def test_an_oversized_table_is_refused_before_it_is_read(fresh, cli, tmp_path, monkeypatch):
    import edgenas.limits

    table = tmp_path / "big.csv"
    table.write_text("\n".join(_good_rows(50)) + "\n")
    monkeypatch.setattr(edgenas.limits, "MAX_JSON_BYTES", 1000)  # EDGENAS_MAX_INPUT_MB, here 1000 bytes
    for args in _commands(table):
        one_line_error(cli(*args), "big.csv", "over the", "limit for tables", "EDGENAS_MAX_INPUT_MB")
    assert list(fresh.iterdir()) == []


def test_too_many_latency_columns_is_one_line(fresh, cli, tmp_path):
    """400 rows of 60 latency columns ran past 120 s, and each column is about 0.4 MB of the record."""
    from edgenas.errors import InputError
    from edgenas.latency.fewshot import MAX_LATENCY_COLUMNS, HwTable

    rows = _good_rows(60)
    extra = [f"x{j}_ms" for j in range(MAX_LATENCY_COLUMNS - 2)]  # 3 + 14 = 17 columns
    lines = [rows[0] + "," + ",".join(extra)] + [r + "," + ",".join(["1.5"] * len(extra)) for r in rows[1:]]
    table = tmp_path / "wide.csv"
    table.write_text("\n".join(lines) + "\n")
    one_line_error(cli(*_commands(table)[0]), "wide.csv",
                   f"17 latency (*_ms) columns, more than the {MAX_LATENCY_COLUMNS}")
    assert list(fresh.iterdir()) == []
    with pytest.raises(InputError, match="more than the"):
        HwTable(table)
    table.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")  # 16 columns: read
    assert len(HwTable(table).ms_columns) == MAX_LATENCY_COLUMNS


def test_a_repeated_column_is_one_line_for_device_add_as_for_search(fresh, cli, tmp_path):
    rows = _good_rows(60)
    lines = [rows[0] + ",raspi4_ms"] + [r + ",1.0" for r in rows[1:]]
    table = tmp_path / "dup.csv"
    table.write_text("\n".join(lines) + "\n")
    one_line_error(cli(*_commands(table)[0]), "dup.csv", "column names must be unique", "'raspi4_ms' appears twice")
    one_line_error(cli(*_commands(table)[1]), "dup.csv", "column names must be unique")
    assert list(fresh.iterdir()) == []


def _extreme_table(tmp_path: Path, values: list[str]) -> Path:
    rows = _good_rows(400)
    out = [rows[0]]
    for i, r in enumerate(rows[1:]):
        f = r.split(",")
        if i < len(values):
            f[2] = values[i]
        out.append(",".join(f))
    path = tmp_path / "extreme.csv"
    path.write_text("\n".join(out) + "\n")
    return path


def test_values_that_are_no_latency_are_left_out_and_the_fit_is_quiet(tmp_path):
    """1e300 and 1e-320 ms in five rows printed twelve numpy overflow warnings and then a vague error after
    the device had measured three cells; now they count as missing (like NaN or a negative value), and the
    fit of the table-corrected model on the rest gives finite latencies without a warning."""
    from edgenas.fleet.fewshot import _fit
    from edgenas.latency.fewshot import MAX_MS, MIN_MS
    from edgenas.latency.fewshot_table import TableReferences
    from edgenas.spaces import get_space

    space = get_space("nb201")
    path = _extreme_table(tmp_path, ["1e300", "1e-320", "-3", "nan", "inf", "1e7", "1e-6"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tref = TableReferences.build(path, space)
        assert tref.rows == 400 - 5  # 1e7 and 1e-6 ms are kept: the bounds of a plausible latency
        known = tref.measured[np.isfinite(tref.measured)]
        assert known.min() >= MIN_MS and known.max() <= MAX_MS
        cells, measured = tref.measured_cells(space)
        archs, y = cells[:6], measured[:6, 0] * 1.7
        reg, _ = _fit(space, archs, y, [], tref)
        from edgenas.latency.fewshot_model import model_features

        pred = reg.predict(model_features(space, space.all_archs()[:500], [], tref))
    assert np.all(np.isfinite(pred)) and np.all(pred > 0)


def test_a_table_without_a_usable_row_is_one_line_before_anything_is_measured(fresh, cli, tmp_path):
    path = _extreme_table(tmp_path, ["1e300"] * 360)
    one_line_error(cli(*_commands(path)[0]), "only 40 distinct cells have every latency column measured",
                   "1e-06 to 1e+07")
    assert list(fresh.iterdir()) == []



@pytest.mark.parametrize("arch, fragment", [
    (lambda n, a: f"|bogus~0|{n}", "line 2: '|bogus~0|1' is not a nb201 cell"),
    (lambda n, a: a, "junk.csv: an index appears twice"),
])
def test_one_search_table_is_checked_like_several(fresh, cli, tmp_path, arch, fragment):
    """A single ``--table`` of no nb201 cells, or of index 0 on every row, ran: "no feasible architecture
    found", exit 0, a run folder and a database row (join_tables checked indices only with two tables)."""
    if not TABLE.exists():
        pytest.skip(f"reference table not found at {TABLE}")
    with open(TABLE) as fh:
        lines = [next(fh).rstrip("\n") for _ in range(61)]
    for n in range(1, len(lines)):  # as the audit made it: index 0, arch replaced
        _, a, rest = lines[n].split(",", 2)
        lines[n] = f"0,{arch(n, a)},{rest}"
    table = tmp_path / "junk.csv"
    table.write_text("\n".join(lines) + "\n")
    res = cli("search", "--space", "nb201", "--strategy", "random", "--budget", "5", "--table", str(table),
              "--out", "t1")
    one_line_error(res, fragment)
    assert res.code == 2
    assert list(fresh.iterdir()) == []
