"""Strict reading and atomic writing of edgenas's files: JSON, TOML, CSV tables and append-only logs, each
refusal one ``InputError`` (or ``OutputError`` for a disk that refuses) that names the file (found by mutation
testing: these paths were only reached through the CLI, and several of their checks by no test)."""

from __future__ import annotations

import errno
import hashlib
import json
import os

import pytest

from edgenas import io as eio
from edgenas import limits
from edgenas.errors import InputError, OutputError


def test_json_is_written_indented_or_compact_with_a_final_newline(tmp_path):
    obj = {"b": [1, 2], "a": "x"}
    assert eio.atomic_write_json(tmp_path / "r.json", obj) == tmp_path / "r.json"
    assert (tmp_path / "r.json").read_text() == json.dumps(obj, indent=2) + "\n"  # keys in their order
    eio.atomic_write_json(tmp_path / "c.json", obj, compact=True)
    assert (tmp_path / "c.json").read_text() == '{"b":[1,2],"a":"x"}\n'
    eio.atomic_write_text(tmp_path / "t.txt", "é\n")
    assert (tmp_path / "t.txt").read_bytes() == "é\n".encode()


def test_read_json_takes_its_own_limit_and_refuses_what_is_not_utf8(tmp_path):
    f = tmp_path / "r.json"
    f.write_text('{"a": 1}')  # 8 bytes
    assert eio.read_json(f, limit=8) == {"a": 1}
    with pytest.raises(InputError, match="is 8 bytes, over the 7-byte limit for records"):
        eio.read_json(f, "record", limit=7)
    f.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(InputError) as exc:
        eio.read_json(f, "record")
    assert exc.value.message == f"cannot read record {f}: not UTF-8 text"
    f.write_text("[" * 65 + "]" * 65)
    with pytest.raises(InputError, match=f"record {f}: nested more than 64"):
        eio.read_json(f, "record")


@pytest.mark.parametrize("text, key", [
    ('{"space": "mbv3-tiny", "d": [1, 1], "r": 16, "d": [2, 2]}', "'d'"),  # the second "d" was exported
    ('{"entries": {"a": {"n": 1}}, "threads": 1, "threads": 4}', "'threads'"),
    ('[{"x": {"a": 1, "a": 1}}]', "'a'"),  # nested, and the same value twice
])
def test_a_json_document_with_a_key_given_twice_is_one_error_naming_the_key_and_the_file(tmp_path, text, key):
    f = tmp_path / "r.json"
    f.write_text(text)
    with pytest.raises(InputError) as exc:
        eio.read_json(f, "record")
    assert exc.value.message == f"record {f}: the key {key} is given twice in one object"
    assert exc.value.hint == "keep one of them: edgenas does not guess which was meant"
    f.write_text('{"a": {"b": 1}, "b": {"a": 2}, "c": [{"b": 3}, {"b": 4}]}')  # the same key in other objects
    assert eio.read_json(f, "record") == {"a": {"b": 1}, "b": {"a": 2}, "c": [{"b": 3}, {"b": 4}]}


def test_a_key_given_twice_is_found_on_the_slower_path_too_and_log_lines_keep_the_fast_one():
    """Text with a 309-digit number or a surrogate is parsed by a second call: it checks keys too. A log line
    (``loads_json`` without ``unique_keys``) is read as ``json.loads`` reads it, at its speed."""
    for text in ('{"a": 1, "a": "\\ud83d\\ude00"}', '{"a": 1, "a": ' + "1" * 309 + "}"):
        with pytest.raises(limits.DuplicateKey):
            limits.loads_json(text, unique_keys=True)
    assert limits.loads_json('{"a": 1, "a": 2}') == {"a": 2}


@pytest.mark.parametrize("name, reader", [("r.json", eio.read_json), ("s.toml", eio.read_toml)])
def test_a_json_or_toml_file_with_a_byte_order_mark_is_refused_saying_so(tmp_path, name, reader):
    """tomllib said "Invalid statement (at line 1, column 1)", json "Unexpected UTF-8 BOM (decode using
    utf-8-sig)"; the file is refused as before, with what to do."""
    f = tmp_path / name
    f.write_bytes(b"\xef\xbb\xbf" + (b'{"a": 1}' if name.endswith(".json") else b"a = 1\n"))
    with pytest.raises(InputError) as exc:
        reader(f, "settings")
    assert exc.value.message == f"settings {f} starts with a byte-order mark (BOM)"
    assert exc.value.hint == "save it as UTF-8 without a BOM (the encoding 'UTF-8', not 'UTF-8 with BOM')"
    f.write_bytes(f.read_bytes()[3:])
    assert reader(f, "settings") == {"a": 1}


@pytest.mark.parametrize("data, needle", [
    (b"a = [1,\n", "malformed settings {f}: "),
    (b"a = '\xff'\n", "malformed settings {f}: "),
    (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "malformed settings {f}: nested too deeply"),
    (b"[d]\nport = [-1" + b"0" * 400 + b"]\n", "settings {f}: a number too large to read"),  # float() overflowed
    (b"port = " + b"9" * 5000 + b"\n", "settings {f}: a number too large to read"),  # over Python's 4,300 digits
])
def test_toml_that_cannot_be_read_is_one_input_error(tmp_path, data, needle):
    f = tmp_path / "s.toml"
    f.write_bytes(b"ok = 1\n")
    assert eio.read_toml(f, "settings") == {"ok": 1}
    f.write_bytes(data)
    with pytest.raises(InputError) as exc:
        eio.read_toml(f, "settings")
    assert exc.value.message.startswith(needle.format(f=f)), exc.value.message


def test_a_csv_table_is_its_header_its_rows_and_the_hash_of_its_bytes(tmp_path):
    data = "\ufeffarch,ms\nA,1.5\n\nB,2\n".encode()  # a BOM, as a spreadsheet writes it
    f = tmp_path / "t.csv"
    f.write_bytes(data)
    header, rows, digest = eio.read_csv(f, "table")
    assert header == ["arch", "ms"] and rows == [["A", "1.5"], [], ["B", "2"]]  # row i is line i + 2
    assert digest == hashlib.sha256(data).hexdigest()
    f.write_bytes(b"")
    assert eio.read_csv(f, "table") == ([], [], hashlib.sha256(b"").hexdigest())


@pytest.mark.parametrize("header, message", [
    (b"arch,ms,ms", "table {f}: column names must be unique and non-empty ('ms' appears twice)"),
    (b"arch, ,ms", "table {f}: column names must be unique and non-empty"),
    (b"arch,,,ms", "table {f}: column names must be unique and non-empty"),  # '' twice: not named
])
def test_a_csv_table_whose_column_names_repeat_or_are_empty_is_refused(tmp_path, header, message):
    f = tmp_path / "t.csv"
    f.write_bytes(header + b"\nA,1,2,3\n")
    with pytest.raises(InputError) as exc:
        eio.read_csv(f, "table")
    assert exc.value.message == message.format(f=f)
    assert exc.value.hint == "rename or remove the repeated or empty column"


@pytest.mark.parametrize("data, start", [
    (b"arch,ms\nA,\xff\n", "table {f} is not a UTF-8 CSV file (UnicodeDecodeError: "),
    (b"arch,ms\n" + b"x" * 200_000 + b",1\n", "table {f} is not a UTF-8 CSV file (Error: field larger than"),
])
def test_a_table_that_is_not_utf8_csv_is_one_input_error(tmp_path, data, start):
    f = tmp_path / "t.csv"
    f.write_bytes(data)
    with pytest.raises(InputError) as exc:
        eio.read_csv(f, "table")
    assert exc.value.message.startswith(start.format(f=f)), exc.value.message


def test_a_log_is_read_whole_up_to_its_limit_and_refused_past_it(tmp_path, monkeypatch):
    assert eio.MAX_LOG_BYTES == 32 * limits.MAX_JSON_BYTES
    log = tmp_path / "evaluations.jsonl"
    assert eio.read_log_bytes(log) is None  # no log yet
    data = b"x" * (2 << 20)
    log.write_bytes(data)
    monkeypatch.setattr(eio, "MAX_LOG_BYTES", 2 << 20)
    assert eio.read_log_bytes(log) == data
    log.write_bytes(data + b"x" * (1 << 20))
    with pytest.raises(InputError) as exc:
        eio.read_log_bytes(log)
    assert exc.value.message == f"{log} is 3.0 MB, over the 2 MB limit for logs"


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_log_that_is_a_link_a_fifo_or_a_folder_is_one_input_error_and_no_descriptor_leaks(tmp_path):
    (tmp_path / "target").write_text("x\n")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    before = fds()
    for name, message in (("link", "{p} is a symbolic link; a log is a file of its own folder"),
                          ("fifo", "{p} is not a regular file"), ("dir", "{p} is not a regular file")):
        with pytest.raises(InputError) as exc:
            eio.read_log_bytes(tmp_path / name)
        assert exc.value.message == message.format(p=tmp_path / name)
    reader = os.open(tmp_path / "fifo", os.O_RDONLY | os.O_NONBLOCK)  # with a reader, a FIFO opens for writing
    try:
        for name, message in (("link", "{p} is a symbolic link; a log is a file of its own folder"),
                              ("fifo", "{p} is not a regular file")):
            with pytest.raises(InputError) as exc:
                eio.open_log_for_append(tmp_path / name)
            assert exc.value.message == message.format(p=tmp_path / name)
    finally:
        os.close(reader)
    assert fds() == before
    assert (tmp_path / "target").read_text() == "x\n"


@pytest.mark.parametrize("code, kind, message, reading", [
    (errno.EACCES, OutputError, "cannot write the log {p}: Permission denied", False),
    (errno.EACCES, InputError, "cannot read the log {p}: permission denied", True),
    (errno.EPERM, InputError, "cannot read the log {p}: permission denied", True),
    (errno.EROFS, OutputError, "cannot write the log {p}: Read-only file system", None),
    (errno.EIO, InputError, "cannot open {p}: Input/output error", None),
])
def test_a_log_the_system_refuses_is_named_as_a_disk_or_a_damaged_folder(tmp_path, monkeypatch, code, kind, message,
                                                                        reading):
    """``reading``: only the reader's (True) or the appender's (False) error, else both. A log this user may not
    read is the input's ("cannot read", exit 2): it was "cannot write the log" for a reader too (``report RUN``)."""
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    log = tmp_path / "evaluations.jsonl"
    monkeypatch.setattr(eio.os, "open", refuse)
    calls = {True: (eio.read_log_bytes,), False: (eio.open_log_for_append,)}.get(
        reading, (eio.read_log_bytes, eio.open_log_for_append))
    for call in calls:
        with pytest.raises(kind) as exc:
            call(log)
        assert type(exc.value) is kind and exc.value.message == message.format(p=log)


def test_a_log_opened_for_append_is_created_and_appended_to(tmp_path):
    log = tmp_path / "evaluations.jsonl"
    with eio.open_log_for_append(log) as fh:
        fh.write("a\n")
    with eio.open_log_for_append(log) as fh:
        fh.write("é\n")
    assert eio.read_log_bytes(log) == "a\né\n".encode()
    assert oct(log.stat().st_mode & 0o777) == oct(0o644 & ~current_umask())
    log.write_bytes(b'{"n": 0}\n{"n')                                  # a torn last line (kill -9)
    with eio.open_log_for_append(log, whole=9):
        pass                                                            # nothing written: the file as it was
    assert log.read_bytes() == b'{"n": 0}\n{"n'
    with eio.open_log_for_append(log, whole=9) as fh:
        fh.write('{"n": 1}\n')
        fh.write('{"n": 2}\n')                                          # cut once, before the first write
    assert log.read_bytes() == b'{"n": 0}\n{"n": 1}\n{"n": 2}\n'


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
