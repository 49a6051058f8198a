"""``edgenas.cli._common``: the project a command works on, ``--json`` output, notes and warnings, progress bars
and tables, on a pipe and on a terminal. Found by mutation testing: the project from the current folder, a
progress bar's content, numpy values in ``--json``, soft wrapping and a table on a terminal were checked by
no test."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_hw.csv"


def test_without_the_variable_the_project_is_the_current_folder(tmp_path, monkeypatch):
    from edgenas.cli._common import project

    monkeypatch.chdir(tmp_path)
    for value in (None, ""):
        if value is None:
            monkeypatch.delenv("EDGENAS_PROJECT", raising=False)
        else:
            monkeypatch.setenv("EDGENAS_PROJECT", value)
        assert project().root == tmp_path.resolve()
    monkeypatch.setenv("EDGENAS_PROJECT", "new")  # relative: to the current folder, not created
    assert project().root == tmp_path.resolve() / "new" and not (tmp_path / "new").exists()


def test_a_project_folder_whose_name_is_not_utf8_is_refused(tmp_path, monkeypatch):
    from edgenas.cli._common import project

    odd = tmp_path / "r\udcff"  # the bytes b"r\xff": no UTF-8 text
    odd.mkdir()
    monkeypatch.chdir(odd)
    monkeypatch.delenv("EDGENAS_PROJECT", raising=False)
    with pytest.raises(InputError, match=r"the project folder \(the current folder\) .* is not UTF-8 text"):
        project()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGENAS_PROJECT", str(odd))
    with pytest.raises(InputError, match=r"the project folder \(EDGENAS_PROJECT\) .* is not UTF-8 text"):
        project()


def test_json_takes_numpy_values_and_refuses_what_it_cannot_write(capsys):
    from edgenas.cli._common import emit_json

    emit_json({"a": np.arange(3), "b": np.float32(1.5), "c": np.array([np.nan])})
    assert capsys.readouterr().out == json.dumps({"a": [0, 1, 2], "b": 1.5, "c": [None]}, indent=2) + "\n"
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        emit_json({"x": object()})
    assert capsys.readouterr().out == ""


def test_json_is_flushed_before_the_process_goes_on():
    code = "import os\nfrom edgenas.cli._common import emit_json\nemit_json({'a': 1})\nos._exit(0)\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe: block-buffered
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(env, PYTHONPATH=str(ROOT)))
    assert json.loads(res.stdout) == {"a": 1}, res.stderr


def test_notes_and_warnings_go_to_stderr(capsys):
    from edgenas.cli._common import note, warn

    note("reused the table")
    warn("the device is throttling")
    assert capsys.readouterr() == ("", "reused the table\nwarning: the device is throttling\n")


def test_a_progress_bar_shows_each_task_at_its_last_count_unless_quiet(capsys, monkeypatch):
    from edgenas.cli._common import progress_bar

    monkeypatch.delenv("EDGENAS_NO_PROGRESS", raising=False)
    with progress_bar() as bar:
        bar("blocks [red]of[/red] dev", 1, 4)
        bar("blocks [red]of[/red] dev", 3, 4)
        bar("fit", 2, 2)
    err = capsys.readouterr().err
    assert "blocks [red]of[/red] dev" in err and "3/4" in err and "1/4" not in err and "fit" in err and "2/2" in err
    with progress_bar(quiet=True) as bar:
        bar("blocks", 1, 4)
    with pytest.raises(ValueError, match="boom"):  # an error in the block goes on up; the bar's state is kept
        with progress_bar() as bar:
            bar("late", 1, 9)
            raise ValueError("boom")
    err = capsys.readouterr().err
    assert "late" in err and "1/9" in err and "blocks" not in err
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    with progress_bar() as bar:
        bar("blocks", 1, 4)
    assert capsys.readouterr() == ("", "")


def test_a_table_folds_long_values_instead_of_cutting_them():
    from rich.console import Console

    from edgenas.cli._common import results_table

    table = results_table("name", "value")
    table.add_column("fixed", no_wrap=True)
    assert [c.overflow for c in table.columns] == ["fold", "fold", "ellipsis"]
    table = results_table("name")
    table.add_row("n" * 30)
    with open(os.devnull, "w") as devnull:
        console = Console(width=20, record=True, file=devnull)
        console.print(table)
    text = "".join(console.export_text().split()).replace("│", "")
    assert "n" * 30 in text and "…" not in text


SHOW = """
from edgenas.cli._common import err, out, print_table, results_table
t = results_table("name", "value")
t.add_row("x" * 100, "value 123")
print_table(t)
out.print("word " * 30 + "'quoted' 42")
err.print("wide " * 30)
err.print("error: 'quoted' 42 [1]")
print("width", out.width)
"""


def test_a_table_is_as_wide_as_its_rows_on_a_pipe_and_long_lines_stay_lines():
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="40")
    res = subprocess.run([sys.executable, "-c", SHOW], capture_output=True, text=True, timeout=60, env=env)
    lines = res.stdout.splitlines()
    assert any("x" * 100 in line and "value 123" in line for line in lines), res.stdout
    assert ("word " * 30 + "'quoted' 42") in lines and lines[-1] == "width 40"
    assert res.stderr == "wide " * 30 + "\n" + "error: 'quoted' 42 [1]\n"


def test_a_table_on_a_terminal_fits_it_and_plain_text_is_not_coloured():
    main, sub = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="40", TERM="xterm")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-c", SHOW], stdin=subprocess.DEVNULL, stdout=sub, stderr=sub, env=env)
    os.close(sub)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode()
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert len(rows) > 1 and all(len(line) <= 40 for line in rows), text
    assert "".join(text.split()).count("x") >= 100 and "123" in text  # the long value folded, not cut
    assert ("word " * 30 + "'quoted' 42") in text and "error: 'quoted' 42 [1]" in text  # plain text is not coloured


def test_a_link_to_a_project_folder_under_a_missing_parent_is_refused(tmp_path, monkeypatch, cli):
    """A link to a missing folder (an unmounted /mnt/usb/proj) passed the parent check on the link's own folder,
    and a search then made the whole tree, its database included, under the missing parent."""
    from edgenas.cli._common import project
    from tests.cli.test_bad_input import one_line_error

    link = tmp_path / "proj"
    link.symlink_to(tmp_path / "unmounted" / "deep" / "proj")
    monkeypatch.setenv("EDGENAS_PROJECT", str(link))
    res = cli("search", "--space", "nb201", "--table", str(TABLE), "--latency-column", "raspi4_ms",
              "--max-latency-ms", "20", "--budget", "3", "--out", str(tmp_path / "r"))
    one_line_error(res, f"EDGENAS_PROJECT names {link} ({tmp_path}/unmounted/deep/proj), whose parent folder "
                        "does not exist")
    assert not (tmp_path / "unmounted").exists() and not (tmp_path / "r").exists()
    (tmp_path / "unmounted" / "deep").mkdir(parents=True)  # a link to a folder yet to be made, in one that is
    assert project().root == (tmp_path / "unmounted" / "deep" / "proj").resolve()
    (tmp_path / "real").mkdir()
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "to-real"))
    (tmp_path / "to-real").symlink_to(tmp_path / "real")
    assert project().root == (tmp_path / "real").resolve()
