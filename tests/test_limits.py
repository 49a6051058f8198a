"""Limits on input files and the numbers records may hold, at their documented boundaries: a value at a
limit is taken, one past it refused (found by mutation testing: each `<` / `<=` here was free to move)."""

from __future__ import annotations

import errno
import json
import math
import os

import pytest

from edgenas import limits
from edgenas.errors import InputError


@pytest.mark.parametrize("raw, mb", [(None, 32.0), ("1048576", 1048576.0), ("0.5", 0.5), ("64", 64.0)])
def test_the_input_limit_defaults_to_32_mb_and_takes_up_to_1048576(monkeypatch, raw, mb):
    if raw is None:
        monkeypatch.delenv("EDGENAS_MAX_INPUT_MB", raising=False)
    else:
        monkeypatch.setenv("EDGENAS_MAX_INPUT_MB", raw)
    assert limits._limit_mb() == (mb, None)


@pytest.mark.parametrize("raw", ["0", "1048577", "-0.5"])
def test_an_input_limit_of_0_or_past_1048576_mb_is_refused(monkeypatch, raw):
    monkeypatch.setenv("EDGENAS_MAX_INPUT_MB", raw)
    mb, problem = limits._limit_mb()
    assert mb == 32.0 and problem == ("EDGENAS_MAX_INPUT_MB must be a number of MB above 0 and at most 1048576, "
                                      f"got {raw!r}")


def test_a_malformed_input_limit_is_reported_by_check_env(monkeypatch):
    monkeypatch.setattr(limits, "_ENV_PROBLEM", None)
    limits.check_env()
    monkeypatch.setattr(limits, "_ENV_PROBLEM", "EDGENAS_MAX_INPUT_MB must be ...")
    with pytest.raises(InputError, match="EDGENAS_MAX_INPUT_MB must be") as exc:
        limits.check_env()
    assert exc.value.hint == "unset it, or set e.g. EDGENAS_MAX_INPUT_MB=64"


def test_the_input_limit_counts_mb_of_1048576_bytes():
    assert limits.MAX_JSON_BYTES == int(limits._LIMIT_MB * 1048576)


def test_a_file_of_exactly_the_limit_is_read_and_one_byte_more_refused_on_its_stated_size(tmp_path):
    f = tmp_path / "t.json"
    f.write_bytes(b"x" * 100)
    assert limits.read_bytes_limited(f, "record", 100) == b"x" * 100
    with pytest.raises(InputError, match="is 100 bytes, over the 99-byte limit for records"):
        limits.read_bytes_limited(f, "record", 99)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (3 << 20))
    with pytest.raises(InputError) as exc:  # refused on its size, which the message states
        limits.read_bytes_limited(big, "record", 1 << 20, hint="use a smaller one")
    assert exc.value.message == f"record {big} is 3.0 MB, over the 1 MB limit for records"
    assert exc.value.hint == "use a smaller one"


@pytest.mark.parametrize("size, limit, text", [
    (3 << 20, 1 << 20, "3.0 MB, over the 1 MB limit"),
    (89, 0, "89 bytes, over the 0-byte limit"),  # EDGENAS_MAX_INPUT_MB=0.0000001: "0.0 MB, over the 0 MB limit"
    (1001, 1000, "1,001 bytes, over the 1,000-byte limit"),  # was "0.0 MB, over the 0.000953674 MB limit"
    ((32 << 20) + 1, 32 << 20, "33,554,433 bytes, over the 33,554,432-byte limit"),  # was "32.0 MB, over the 32 MB"
    (int(1.36 * 2 ** 20), int(1.3 * 2 ** 20), "1.4 MB, over the 1.3 MB limit"),
])
def test_a_size_over_a_limit_is_stated_so_that_it_reads_over_it(size, limit, text):
    assert limits.over_limit(size, limit) == text
    assert limits.size_text(1000) == "1,000 bytes" and limits.limit_text(0, before_limit=False) == "0 bytes"


def test_the_files_a_limit_is_for_are_named_in_the_plural(tmp_path):
    """An inventory over the limit was over the limit "for YAML inventorys"."""
    f = tmp_path / "inv.yml"
    f.write_bytes(b"x" * 10)
    with pytest.raises(InputError) as exc:
        limits.read_bytes_limited(f, "YAML inventory", 9)
    assert exc.value.message.endswith("over the 9-byte limit for YAML inventories")
    assert [limits.plural(w) for w in ("key", "table", "fleet inventory")] == ["keys", "tables", "fleet inventories"]


def test_a_file_over_a_lowered_limit_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "_LIMIT_MB", 1e-7)
    monkeypatch.setattr(limits, "MAX_JSON_BYTES", 0)
    f = tmp_path / "t.json"
    f.write_bytes(b"{}")
    with pytest.raises(InputError) as exc:
        limits.read_bytes_limited(f, "record", limits.MAX_JSON_BYTES)
    assert exc.value.message == f"record {f} is 2 bytes, over the 0-byte limit for records"
    assert exc.value.hint.endswith("; EDGENAS_MAX_INPUT_MB=1e-07 lowered the limit from 32 MB")


def test_a_table_over_the_limit_names_the_setting_that_raises_it(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_JSON_BYTES", 2 << 20)
    f = tmp_path / "t.csv"
    f.write_bytes(b"a,b\n" * (1 << 20))  # 4 MiB
    with pytest.raises(InputError) as exc:
        limits.read_table_bytes(f)
    assert exc.value.message == f"benchmark table {f} is 4.0 MB, over the 2 MB limit for tables"
    assert exc.value.hint == "check the path; a larger table needs EDGENAS_MAX_INPUT_MB above 2"


def test_a_file_that_grew_after_its_size_was_read_is_refused_past_the_limit(tmp_path, monkeypatch):
    """The size fstat gave is not trusted: what is read is counted (one byte past a whole 1 MiB read too)."""
    f = tmp_path / "t.json"
    f.write_bytes(b"x" * ((1 << 20) + 5))
    real_fstat = os.fstat

    class Small:  # the size it had when it was opened
        def __init__(self, st):
            self.st_mode, self.st_size = st.st_mode, 0

    monkeypatch.setattr(limits.os, "fstat", lambda fd: Small(real_fstat(fd)))
    with pytest.raises(InputError) as exc:
        limits.read_bytes_limited(f, "record", 1 << 20)
    assert exc.value.message == f"record {f} is over the 1 MB limit for records"


def test_a_file_larger_than_one_read_is_read_whole(tmp_path):
    data = bytes(range(256)) * ((3 << 20) // 256) + b"tail"  # 3 MiB and 4 bytes: four reads of at most 1 MiB
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    assert limits.read_bytes_limited(f, "table", len(data)) == data


def test_a_file_that_states_no_size_is_still_refused_past_the_limit():
    """/proc files are regular files of size 0 whatever they hold: the limit is checked on what was read."""
    with pytest.raises(InputError, match="/proc/self/status is over the 1,024-byte limit for records"):
        limits.read_bytes_limited("/proc/self/status", "record", 1024)
    assert b"Name:" in limits.read_bytes_limited("/proc/self/status", "record", 1 << 20)


def test_what_is_not_a_readable_regular_file_is_one_input_error_and_leaks_no_descriptor(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opened plainly, it blocks for ever
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dir").mkdir()
    fds = len(os.listdir("/proc/self/fd"))
    for name, message in (("fifo", f"record {fifo} is not a regular file (a FIFO, a device or a socket)"),
                          ("missing", f"record not found: {tmp_path / 'missing'}"),
                          ("dir", f"record {tmp_path / 'dir'} is a folder, not a file"),
                          ("loop", f"cannot read record {tmp_path / 'loop'}: Too many levels of symbolic links")):
        for _ in range(3):
            with pytest.raises(InputError) as exc:
                limits.read_bytes_limited(tmp_path / name, "record")
            assert exc.value.message == message
    assert len(os.listdir("/proc/self/fd")) == fds


def test_a_file_edgenas_may_not_read_is_named_so(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(limits.os, "open", refuse)  # root reads any file: the refusal is simulated
    with pytest.raises(InputError, match="^cannot read record x.json: permission denied$"):
        limits.read_bytes_limited("x.json", "record")


@pytest.mark.parametrize("data, message", [
    (b"[" * 200_000 + b"]" * 200_000, "x: nested too deeply"),
    (b'{"a": "\xff"}', "x: not UTF-8 text"),
    (b'{"a": }', "malformed x: Expecting value at line 1 column 7"),
    (b"9" * 5000, "x: a number too large to read"),
    (b'{"ms": ' + b"1" + b"0" * 400 + b"}", "x: a number too large to read"),
    ('{"ms": [-' + "2" + "0" * 308 + "]}", "x: a number too large to read"),  # str as well as bytes
])
def test_json_that_cannot_be_read_is_one_input_error(data, message):
    with pytest.raises(InputError) as exc:
        limits.loads_json_limited(data, "x")
    assert exc.value.message == message


def test_json_deeper_than_the_parser_reads_is_a_value_error_of_its_own():
    """json.loads' RecursionError passed readers that catch ValueError, as malformed JSON is (fleet refresh's look
    for the last drift check ended with an internal error); a long int or a surrogate takes the other parse."""
    for data in ("[" * 100_000 + "]" * 100_000, "[" * 100_000 + "1" * 400, b"[" * 100_000 + b'"\\ud800"'):
        with pytest.raises(limits.TooDeep, match="^nested too deeply$") as exc:
            limits.loads_json(data)
        assert isinstance(exc.value, ValueError)


def test_json_integers_are_refused_exactly_where_a_float_cannot_hold_them():
    """``float(10**400)`` is an OverflowError: such an int reached range checks as one, deep in the code."""
    import sys

    largest = int(sys.float_info.max)  # 309 digits
    first_over = 2 ** 1024 - 2 ** 970  # halfway between the largest float and 2 ** 1024: rounds up, to overflow
    for v in (largest, -largest, first_over - 1, 10 ** 308, 1, 0):
        assert limits.loads_json(json.dumps({"v": [v]})) == {"v": [v]}
        assert limits.loads_json(json.dumps({"v": [v]}).encode()) == {"v": [v]}
    for v in (first_over, -first_over, 10 ** 309, 10 ** 4000):
        for data in (json.dumps([v]), json.dumps([v]).encode()):
            with pytest.raises(limits.UnreadableValue, match="^a number too large to read$"):
                limits.loads_json(data)
    digits = "9" * 400  # in a string, or a float literal (which reads as inf): not an integer
    assert limits.loads_json(f'["{digits}", {digits}.5]') == [digits, math.inf]
    assert limits.is_finite(first_over - 1) and not limits.is_finite(first_over) and not limits.is_finite(-10 ** 400)
    assert limits.FIRST_OVERFLOW == first_over
    # what YAML and TOML give (their loaders take no hook): check_depth walks every value
    assert limits.check_depth({"a": [first_over - 1, -(first_over - 1), True]}, "x")
    for bad in ({"a": [1, {"b": first_over}]}, [-first_over], first_over):
        with pytest.raises(InputError) as exc:
            limits.check_depth(bad, "x")
        assert exc.value.message == "x: a number too large to read"


@pytest.mark.parametrize("text", ['"\\ud800"', '["ok", {"a": "x\\uDFFFy"}]', '{"\\udbff": 1}', '"\\ude00\\ud83d"'])
def test_json_text_that_is_not_unicode_is_refused(text):
    """A lone surrogate: json.loads gives a str that no UTF-8 file or terminal takes (an internal
    UnicodeEncodeError when a report or a resumed run wrote it)."""
    assert isinstance(json.loads(text), (str, list, dict))
    for data in (text, text.encode()):
        with pytest.raises(limits.UnreadableValue, match="^text that is not Unicode"):
            limits.loads_json(data)
    with pytest.raises(InputError) as exc:
        limits.loads_json_limited(text, "x")
    assert exc.value.message.startswith("x: text that is not Unicode")


def test_a_lone_surrogate_in_the_text_itself_is_refused_too():
    with pytest.raises(limits.UnreadableValue, match="^text that is not Unicode"):
        limits.loads_json('["a", "\ud800"]')  # a str read with surrogateescape, say


def test_json_text_with_a_surrogate_pair_or_escaped_backslash_is_text():
    for text, value in (('"\\ud83d\\ude00"', "\U0001F600"), ('"\\\\ud800"', "\\ud800"), ('"\u00e9"', "\u00e9")):
        assert limits.loads_json(text) == value == limits.loads_json(text.encode())


def test_check_depth_refuses_what_yaml_gives_that_no_record_holds():
    assert limits.check_depth({"caf\u00e9": ["\U0001F600", 1.5]}, "x")
    for bad in (["\ud800"], {"\udfff": 1}, {"a": {"b": "x\udc80"}}):
        with pytest.raises(InputError) as exc:
            limits.check_depth(bad, "x")
        assert exc.value.message.startswith("x: text that is not Unicode")


def nested(depth: int) -> list:
    obj: list = []
    for _ in range(depth - 1):
        obj = [obj]
    return obj


def test_nesting_of_exactly_max_depth_is_taken_and_one_more_refused():
    assert limits.check_depth(nested(limits.MAX_DEPTH), "x") is not None
    with pytest.raises(InputError, match=f"nested more than {limits.MAX_DEPTH} levels"):
        limits.check_depth(nested(limits.MAX_DEPTH + 1), "x")
    assert limits.loads_json_limited("[" * 64 + "]" * 64, "x") is not None
    with pytest.raises(InputError, match="nested more than 64 levels"):
        limits.loads_json_limited("[" * 65 + "]" * 65, "x")


def test_a_container_met_again_is_walked_once_and_the_rest_still_checked():
    walks = []

    class Counted(list):
        def __iter__(self):
            walks.append(1)
            return super().__iter__()

    shared = Counted([1, 2])
    limits.check_depth([shared, shared, shared], "x")
    assert len(walks) == 1  # a YAML alias bomb is 10**9 walks otherwise
    with pytest.raises(InputError, match="nested more than 64"):  # walked after the shared list was met again
        limits.check_depth({"deep": nested(70), "x": shared, "y": shared}, "x")


def test_exactly_max_nodes_containers_are_taken_and_one_more_refused():
    assert limits.check_depth([[i] for i in range(9)], "x", max_nodes=10) is not None  # 10 lists
    with pytest.raises(InputError, match="more than 10 lists and tables"):
        limits.check_depth([[i] for i in range(10)], "x", max_nodes=10)


@pytest.mark.parametrize("v, whole, count", [
    (0, True, True), (3, True, True), (3.0, False, True), (-1, False, False), (3.5, False, False),
    (2 ** 63 - 1, True, True), (2 ** 63, True, False), (True, False, False), (float("inf"), False, False),
    (float("nan"), False, False), ("3", False, False),
])
def test_whole_numbers_and_counts_at_their_limits(v, whole, count):
    assert limits.is_whole(v) is whole
    assert limits.is_count(v) is count


@pytest.mark.parametrize("seed, ok", [(0, True), (2 ** 63 - 1, True), (2 ** 63, False), (-1, False),
                                      (True, False), (1.0, False)])
def test_seeds_from_0_to_2_63_minus_1(seed, ok):
    if ok:
        assert limits.check_seed(seed) == seed
    else:
        with pytest.raises(InputError, match="--seed must be an integer from 0 to 2\\*\\*63-1"):
            limits.check_seed(seed)


def test_a_count_at_its_low_and_high_limits_is_taken():
    assert limits.check_count(2, "--n", low=2, high=5) == 2
    assert limits.check_count(5, "--n", low=2, high=5) == 5
    with pytest.raises(InputError, match="--n must be an integer >= 2, got 1"):
        limits.check_count(1, "--n", low=2, high=5)
    with pytest.raises(InputError, match="--n must be at most 5, got 6"):
        limits.check_count(6, "--n", low=2, high=5)
    with pytest.raises(InputError, match="--n must be an integer >= 0, got False"):
        limits.check_count(False, "--n")


def load_yaml(tmp_path, text: str):
    f = tmp_path / "inv.yaml"
    f.write_text(text)
    return limits.load_yaml_limited(f, "inventory")


@pytest.mark.parametrize("text, needle", [
    ("- {a: 1, a: 2}\n", "the key 'a' is given twice"),  # in a list
    ("c: {d: 1, d: 2}\na: &x {k: 1}\nb: *x\n", "the key 'd' is given twice"),  # checked after an alias
    ("base: &b {p: 1}\nm: {<<: *b, x: 1, x: 2}\n", "the key 'x' is given twice"),  # after a merge
    ("k" * 78 + ": 1\n" + "k" * 78 + ": 2\n", "the key '" + "k" * 78 + "' is given twice"),  # 80 characters
    ("k" * 79 + ": 1\n" + "k" * 79 + ": 2\n", "the key '" + "k" * 76 + "... is given twice"),
])
def test_a_key_given_twice_anywhere_in_a_yaml_file_is_refused(tmp_path, text, needle):
    with pytest.raises(InputError) as exc:
        load_yaml(tmp_path, text)
    assert needle in exc.value.message


@pytest.mark.parametrize("data, message", [
    (b"a: [1, 2\n", "malformed inventory {f} at line 2 column 1: expected ',' or ']', but got '<stream end>'"),
    (b"a: \x07\n", "malformed inventory {f}: unacceptable character #x0007: special characters are not allowed"),
    (b"a: \xff\n", "cannot read inventory {f}: not UTF-8 text"),
    (b"[" * 1000 + b"]" * 1000, "malformed inventory {f}: nested too deeply"),
])
def test_yaml_that_cannot_be_read_is_one_input_error(tmp_path, data, message):
    f = tmp_path / "inv.yaml"
    f.write_bytes(data)
    with pytest.raises(InputError) as exc:
        limits.load_yaml_limited(f, "inventory")
    assert exc.value.message == message.format(f=f)
