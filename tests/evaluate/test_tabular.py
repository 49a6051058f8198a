"""The tabular evaluator and table latency model: real NAS-Bench-201 data and small hand-made CSVs."""

import os
import re
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.evaluate.base import EVALUATORS, make_evaluator
from edgenas.evaluate.tabular import TableLatency, join_tables, load_table
from edgenas.spaces import SPACES
from edgenas.spaces import nb201  # noqa: F401

TABLE = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"
HEAD = "index,arch,cifar10_test,cifar100_test,imagenet16_test"
A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
B = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture
def space():
    return SPACES.get("nb201")


def small(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_real_table(space):
    if not TABLE.exists():
        pytest.skip(f"reference table not found at {TABLE}")
    ev = make_evaluator("tabular", space, table=TABLE, objective="cifar10_test")
    best = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
                             "nor_conv_3x3~1|nor_conv_3x3~2|")
    scores = ev.evaluate([best, space.from_string(A)])
    assert scores[1] == pytest.approx(93.66)
    assert scores[0] == pytest.approx(94.37, abs=0.01)  # the CIFAR-10 optimum
    assert load_table(TABLE).columns["cifar10_test"].max() == pytest.approx(94.37, abs=0.01)
    lat = TableLatency(TABLE, "raspi4_ms", space)
    ms, arch = lat.min_latency()
    assert ms == pytest.approx(load_table(TABLE).columns["raspi4_ms"].min())
    assert lat.predict_many([arch])[0] == ms


def test_small_table_any_ms_column(tmp_path, space):
    p = small(tmp_path, f"{HEAD},my_board_ms\n0,{A},93.5,70,40,12.5\n1,{B},10.0,1,1,0.5\n")
    assert "tabular" in EVALUATORS
    ev = make_evaluator("tabular", space, table=p, objective="cifar100_test")
    assert ev.evaluate([space.from_string(A), space.from_string(B)]).tolist() == [70.0, 1.0]
    other = space.from_string(A.replace("skip_connect~2", "none~2"))
    assert ev.evaluate([other])[0] == -np.inf  # not in the table
    lat = TableLatency(p, "my_board_ms", space)
    assert lat.predict_many([space.from_string(A)]).tolist() == [12.5]
    assert lat.min_latency() == (0.5, space.from_string(B))
    with pytest.raises(InputError, match=rf"architecture {re.escape(other.string)} is not in the table"):
        lat.predict_many([space.from_string(A), other])  # A is row 0


def test_errors_are_clear(tmp_path, space):
    with pytest.raises(InputError, match="not found"):
        make_evaluator("tabular", space, table=tmp_path / "nope.csv")
    p = small(tmp_path, f"{HEAD},x_ms\n0,{A},93.5,70,40,12.5\n")
    with pytest.raises(InputError, match=r"no column 'top1'.*cifar10_test, cifar100_test, imagenet16_test, x_ms"):
        make_evaluator("tabular", space, table=p, objective="top1")
    with pytest.raises(InputError, match=r"no latency column 'y_ms'.*x_ms"):
        TableLatency(p, "y_ms", space)
    bad_head = small(tmp_path, f"arch,index,cifar10_test\n{A},0,93.5\n", "h.csv")
    with pytest.raises(InputError, match="first columns must be index, arch"):
        load_table(bad_head)
    twice = small(tmp_path, f"index,arch,x,x\n0,{A},1,2\n", "tw.csv")
    with pytest.raises(InputError, match="unique"):
        load_table(twice)
    short = small(tmp_path, f"{HEAD}\n0,{A},93.5,70\n", "s.csv")
    with pytest.raises(InputError, match="line 2: 4 fields, expected 5"):
        load_table(short)
    nan = small(tmp_path, f"{HEAD}\n0,{A},abc,70,40\n", "n.csv")
    with pytest.raises(InputError, match="line 2: a value is not a number"):
        load_table(nan)
    for index in ("5.5", "-1"):  # 5.5 was joined as row 5
        frac = small(tmp_path, f"{HEAD}\n{index},{A},93.5,70,40\n", "f.csv")
        with pytest.raises(InputError, match=f"line 2: index '{index}' is not a whole number from 0"):
            load_table(frac)
    odd = small(tmp_path, f"{HEAD},power_w\n0,{A},93.5,70,40,3\n", "o.csv")
    assert load_table(odd).metric_columns[-1] == "power_w"   # any number column is a metric
    with pytest.raises(InputError, match=r"no latency column 'power_w'"):
        TableLatency(odd, "power_w", space)
    with pytest.raises(InputError, match="needs a table"):
        make_evaluator("tabular", space)


def test_a_spreadsheet_bom_is_read_and_a_binary_file_is_a_clear_error(tmp_path):
    from edgenas.latency.fewshot import HwTable

    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + f"{HEAD},x_ms\n0,{A},93.5,70,40,12.5\n".encode())
    assert load_table(bom).metric_columns[0] == "cifar10_test"  # not '\ufeffindex' refused as a header
    assert HwTable(bom).ms_columns == ["x_ms"]
    binary = tmp_path / "model.onnx"
    binary.write_bytes(b"\x08\x07\xd0\xff" * 64)
    for read in (load_table, HwTable):
        with pytest.raises(InputError, match="is not a UTF-8 CSV file"):
            read(binary)
        with pytest.raises(InputError, match="is a folder, not a file"):
            read(tmp_path)


VALID = TABLE.parent / "nb201_valid.csv"


def test_join_tables_on_index_checked_on_arch(tmp_path, space):
    hw = small(tmp_path, f"{HEAD},dev_ms\n0,{A},93.5,70,40,12.5\n1,{B},10.0,1,1,0.5\n", "hw.csv")
    # same architectures, other row order, other columns
    va = small(tmp_path, f"index,arch,c10_valid\n1,{B},9.0\n0,{A},91.0\n", "va.csv")
    t = join_tables([hw, va])
    assert t.name == "hw.csv + va.csv"
    assert t.columns["c10_valid"].tolist() == [91.0, 9.0]            # aligned on index, not row order
    ev = make_evaluator("tabular", space, table=[hw, va], objective="c10_valid", report="cifar10_test")
    archs = [space.from_string(A), space.from_string(B)]
    assert ev.evaluate(archs).tolist() == [91.0, 9.0]
    assert {k: v.tolist() for k, v in ev.report(archs).items()} == {"cifar10_test": [93.5, 10.0]}
    assert TableLatency([hw, va], "dev_ms", space).predict_many(archs).tolist() == [12.5, 0.5]
    wrong = small(tmp_path, f"index,arch,c10_valid\n0,{B},9.0\n1,{A},91.0\n", "wrong.csv")
    with pytest.raises(InputError, match=rf"hw.csv and wrong.csv disagree on index 0: '{re.escape(A)}' vs "
                                         rf"'{re.escape(B)}'"):  # each in the order of the file names
        join_tables([hw, wrong])
    fewer = small(tmp_path, f"index,arch,c10_valid\n0,{A},91.0\n", "fewer.csv")
    with pytest.raises(InputError, match="same indices"):
        join_tables([hw, fewer])
    dup = small(tmp_path, f"index,arch,cifar10_test\n0,{A},1\n1,{B},2\n", "dup.csv")
    with pytest.raises(InputError, match="'cifar10_test' appears in more than one table"):
        join_tables([hw, dup])
    with pytest.raises(InputError, match=r"no column 'nope'.*c10_valid"):
        make_evaluator("tabular", space, table=[hw, va], objective="c10_valid", report="nope")


def test_join_real_tables(space):
    if not VALID.exists():
        pytest.skip(f"reference table not found at {VALID}")
    t = join_tables([TABLE, VALID])
    assert len(t.archs) == 15625
    assert {"cifar10_valid", "cifar10_test", "raspi4_ms", "imagenet16_valid_12ep"} <= set(t.columns)
    best_valid = int(np.argmax(t.columns["cifar10_valid"]))
    assert 91.0 < t.columns["cifar10_valid"][best_valid] < 92.0
    assert t.columns["cifar10_test"][best_valid] == pytest.approx(94.37, abs=0.01)  # the test optimum


def test_a_latency_column_is_refused_as_the_objective(tmp_path, space):
    """``--objective raspi4_ms`` ran and maximised latency: a ``*_ms`` column is a latency, never an accuracy."""
    p = small(tmp_path, f"{HEAD},my_board_ms\n0,{A},93.5,70,40,12.5\n")
    with pytest.raises(InputError, match=r"'my_board_ms' is a latency column") as err:
        make_evaluator("tabular", space, table=p, objective="my_board_ms")
    assert "cifar10_test, cifar100_test, imagenet16_test" in err.value.hint and "my_board_ms" not in err.value.hint
    assert make_evaluator("tabular", space, table=p, objective="cifar100_test", report="my_board_ms")  # recorded: fine


def test_a_table_path_with_a_nul_byte_is_one_input_error():
    """A NUL byte in a table path (a request.json edited by hand) was an internal ValueError from the OS layer."""
    with pytest.raises(InputError, match=r"benchmark table path 'a\\x00b.csv' holds a NUL byte"):
        load_table("a\x00b.csv")


def test_genes_find_their_own_row_of_the_real_table(space):
    """Gene vector -> arch string -> table row, checked against the benchmark itself: a cell whose output node
    no path of non-``none`` edges reaches from the input is a constant network, exactly 10 % on CIFAR-10
    (341 of the 15,625), and every other cell scores above it. The edges are NAS-Bench-201's, written out here:
    gene k is the op of edge (to, from) = (1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)."""
    if not TABLE.exists():
        pytest.skip(f"reference table not found at {TABLE}")
    genes = np.array(np.meshgrid(*[np.arange(5)] * 6, indexing="ij")).reshape(6, -1).T
    on = genes != 0  # OPS[0] is "none"
    node1 = on[:, 0]
    node2 = on[:, 1] | (on[:, 2] & node1)
    output = on[:, 3] | (on[:, 4] & node1) | (on[:, 5] & node2)
    ev = make_evaluator("tabular", space, table=TABLE, objective="cifar10_test")
    acc = ev.evaluate([space.from_genes(g) for g in genes])
    assert (~output).sum() == 341 and np.all(acc[~output] == 10.0) and np.all(acc[output] > 10.0)
    # two rows worked out by hand from the CSV: index 0 and index 1651 (all none)
    hand = {(4, 2, 1, 2, 1, 1): (85.8633, 10.482), (0, 0, 0, 0, 0, 0): (10.0, 0.0118268)}
    archs = [space.from_genes(g) for g in hand]
    assert ev.evaluate(archs).tolist() == [a for a, _ in hand.values()]
    assert TableLatency(TABLE, "raspi4_ms", space).predict_many(archs).tolist() == [ms for _, ms in hand.values()]


@pytest.mark.parametrize("body, message", [
    (f"0,{A},93.5,70,40\n1,{A},10,1,1\n", "an architecture appears twice"),
    ("", "has no rows"),
    (f"0,{A},93.5,inf,40\n", "line 2: a value is not finite"),
    (f"0,{A},93.5,70,nan\n", "line 2: a value is not finite"),
    (f"0,{B},10,1,1\n9007199254740992,{A},93.5,70,40\n", "line 3: index '9007199254740992' is not a whole number"),
    (f"0,{A},93.5,70,40\n0,{B},10,1,1\n", "t.csv: an index appears twice"),
    (f"0,{A},93.5,70,40\n1,|bogus~0|2,10,1,1\n", r"line 3: '\|bogus~0\|2' is not a nb201 cell"),
    (f"0,{A},93.5,70,40\n1,{B} ,10,1,1\n", "line 3: .* is not a nb201 cell"),  # looked up, never found
])
def test_a_bad_table_is_one_input_error(tmp_path, body, message):
    with pytest.raises(InputError, match=message):
        load_table(small(tmp_path, f"{HEAD}\n{body}"))


def test_blank_lines_are_skipped_and_the_largest_exact_index_is_read(tmp_path):
    t = load_table(small(tmp_path, f"{HEAD}\n\n0,{B},10,1,1\n\n9007199254740991,{A},93.5,70,40\n"))
    assert t.archs == [B, A] and t.columns["index"].tolist() == [0, 2 ** 53 - 1]
    assert t.lookup([A, "|x~0|", B]).tolist() == [1, -1, 0]


def test_a_joined_table_with_an_index_twice_is_refused(tmp_path):
    hw = small(tmp_path, f"{HEAD}\n0,{A},93.5,70,40\n0,{B},10,1,1\n", "hw.csv")
    va = small(tmp_path, f"index,arch,c10_valid\n0,{A},91.0\n1,{B},9.0\n", "va.csv")
    for tables in ([hw, va], [va, hw], [hw], hw):  # one table was not checked: a search found nothing and said so
        with pytest.raises(InputError, match="hw.csv: an index appears twice"):
            join_tables(tables)
    with pytest.raises(InputError, match="no benchmark table given"):
        join_tables([])
    other = small(tmp_path, f"index,arch,c10_valid\n0,{A},91.0\n2,{B},9.0\n", "other.csv")  # as many rows
    with pytest.raises(InputError, match="hw2.csv and other.csv do not hold the same indices"):
        join_tables([small(tmp_path, f"{HEAD}\n0,{A},93.5,70,40\n1,{B},10,1,1\n", "hw2.csv"), other])


def test_a_table_path_in_a_link_loop_is_one_input_error(tmp_path):
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    with pytest.raises(InputError, match="cannot read benchmark table .*loop.csv: ") as err:
        load_table(loop)
    assert "loop.csv: None" not in str(err.value)  # the reason, not a missing strerror


@pytest.mark.parametrize("bad, shown", [("0", "0.0"), ("-12.5", "-12.5")])
def test_one_latency_that_is_no_time_refuses_the_column(tmp_path, space, bad, shown):
    """The message named the value as numpy prints it: "(first: np.float64(-12.5) for ...)"."""
    p = small(tmp_path, f"{HEAD},x_ms\n0,{A},93.5,70,40,12.5\n1,{B},10,1,1,{bad}\n")
    with pytest.raises(InputError, match=r"holds 1 values that are not positive finite times "
                                         rf"\(first: {shown} for \|none~0\|"):
        TableLatency(p, "x_ms", space)


def test_check_covers_names_the_architectures_the_table_lacks(tmp_path, space):
    p = small(tmp_path, f"{HEAD},x_ms\n0,{B},10,1,1,0.5\n1,{A},93.5,70,40,12.5\n")
    first_missing = B.replace("none~2", "skip_connect~2")  # all_archs: B first, then the last gene counts up
    with pytest.raises(InputError, match=r"15,623 of the space's 15,625 architectures are not in the table "
                                         rf"\(e\.g\. {re.escape(first_missing)}\)"):
        TableLatency(p, "x_ms", space).check_covers()
    if TABLE.exists():
        lat = TableLatency(TABLE, "raspi4_ms", space)
        assert lat.check_covers() is lat


def test_a_latency_column_needs_the_nb201_space(tmp_path):
    """With another space a search stopped on "device 'x_ms': latency model lacks predict_many/min_latency"."""
    p = small(tmp_path, f"{HEAD},x_ms\n0,{A},93.5,70,40,12.5\n")
    with pytest.raises(InputError, match="latency column needs the nb201 space, not 'mbv3-tiny'"):
        TableLatency(p, "x_ms", SPACES.get("mbv3-tiny"))
    assert TableLatency(p, "x_ms").space is SPACES.get("nb201")  # the default


def test_the_evaluator_needs_nb201_and_describes_its_columns(tmp_path, space):
    p = small(tmp_path, f"{HEAD}\n0,{A},93.5,70,40\n")
    with pytest.raises(InputError, match="needs the nb201 space, not 'mbv3-small'"):
        make_evaluator("tabular", SPACES.get("mbv3-small"), table=p)
    ev = make_evaluator("tabular", space, table=[p], objective="cifar100_test",
                        report=["cifar10_test", "cifar100_test", "cifar10_test"])
    assert ev.describe() == {"name": "tabular", "metric": "cifar100_test (t.csv)", "table": str(p.resolve()),
                             "tables": [str(p.resolve())], "objective": "cifar100_test", "report": ["cifar10_test"]}
    with pytest.raises(InputError, match="needs a table"):
        make_evaluator("tabular", space, table=[])


@pytest.mark.parametrize("report, names", [(None, []), ("a", ["a"]), (["a", "b"], ["a", "b"]), (("a",), ["a"]),
                                           (12, ["12"])])
def test_report_names(report, names):
    from edgenas.evaluate.tabular import report_names

    assert report_names(report, "tabular") == names


@pytest.mark.parametrize("report", [True, 1.5, {"a": 1}, ["a", 3]])
def test_report_names_that_are_no_column_names_are_refused(report):
    from edgenas.evaluate.tabular import report_names

    with pytest.raises(InputError, match="tabular: report= takes column names"):
        report_names(report, "tabular")


def test_a_table_whose_name_is_not_utf8_is_refused_before_it_is_read(tmp_path):
    """Its path is recorded with the run (JSON, the database): a name of another encoding cannot be."""
    raw = os.fsencode(tmp_path) + b"/t\xff.csv"
    with open(raw, "w") as fh:
        fh.write(f"{HEAD}\n0,{A},93.5,70,40\n")
    with pytest.raises(InputError, match=r"benchmark table .*t\ufffd\.csv has a name that is not UTF-8 text"):
        load_table(os.fsdecode(raw))


def test_an_empty_table_says_it_got_nothing(tmp_path):
    with pytest.raises(InputError, match=r"followed by at least one number column \(got nothing\)"):
        load_table(small(tmp_path, ""))
