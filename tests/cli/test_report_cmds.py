"""``edgenas report``: where each kind of report goes by default, what ``--json`` says of it, two run folders
of the same name told apart by their paths, and the fleet page of an inventory. Found by mutation testing:
the default paths, the ``--json`` record and the re-labelling of runs with one id were checked by no test."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest

from tests.cli.test_bad_input import one_line_error

TABLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "nb201" / "nb201_hw.csv"
SEARCH = ("search", "--space", "nb201", "--table", str(TABLE), "--latency-column", "raspi4_ms",
          "--max-latency-ms", "20", "--budget", "6")


def _title(path: Path) -> str:
    return re.search(r"<title>(.*?)</title>", path.read_text()).group(1)


def test_run_and_compare_reports_go_where_they_say(fresh, cli):
    for name, strategy, seed in (("a", "evolution", "1"), ("b", "random", "2")):
        assert cli(*SEARCH, "--strategy", strategy, "--seed", seed, "--out", f"runs/{name}").code == 0
    res = cli("report", "runs/a", "--json")
    assert res.code == 0 and res.err == "", res.err
    written = fresh / "runs" / "a" / "report.html"
    assert res.json() == {"kind": "run", "report_path": "runs/a/report.html", "bytes": written.stat().st_size}
    (fresh / "mine.html").write_text("<p>my notes</p>")
    res = cli("report", "runs/a", "--out", "mine.html")
    one_line_error(res, "mine.html exists and is not an edgenas report")
    assert res.code == 6  # an output that cannot be written, as export's
    assert (fresh / "mine.html").read_text() == "<p>my notes</p>"
    res = cli("report", "runs/a", "--out", "mine.html", "--force")
    assert (res.code, res.out) == (0, "report written: mine.html\n") and (fresh / "mine.html").is_file()
    res = cli("report", "--compare", "runs/a", "runs/b", "--json")
    assert res.code == 0 and res.json()["kind"] == "compare" and res.json()["report_path"] == "compare-report.html"
    assert _title(fresh / "compare-report.html") == "edgenas: comparing a, b"  # the runs' ids
    (fresh / "other").mkdir()
    shutil.copytree(fresh / "runs" / "a", fresh / "other" / "a")  # the same id twice: told apart by path
    assert cli("report", "--compare", "runs/a", "other/a", "--out", "dup.html").code == 0
    assert _title(fresh / "dup.html") == "edgenas: comparing runs/a, other/a"


def test_a_fleet_report_of_an_inventory_names_its_devices(fresh, cli):
    one_line_error(cli("report", "--fleet"), "no device to report on")
    assert list(fresh.iterdir()) == []
    (fresh / "profiles").mkdir()
    (fresh / "profiles" / "fleet.toml").write_text('[fleet]\ndevices = ["local"]\n')
    res = cli("report", "--fleet", "--inventory", "profiles/fleet.toml", "--json")
    assert res.code == 0 and res.json() == {"kind": "fleet", "report_path": "fleet-report.html",
                                            "bytes": (fresh / "fleet-report.html").stat().st_size}, res.err
    assert "local" in (fresh / "fleet-report.html").read_text()
    with socket.socket() as s:  # a port nothing listens on (once closed)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (fresh / "profiles" / "gone.toml").write_text(f'[device]\nname = "gone"\nhost = "127.0.0.1"\nport = {port}\n')
    (fresh / "profiles" / "fleet.toml").write_text('[fleet]\ndevices = ["gone", "local"]\n')
    assert cli("report", "--fleet", "--probe", "--out", "probed.html").code == 0
    assert "connection refused by" in (fresh / "probed.html").read_text()  # --probe contacted each device
    one_line_error(cli("report", "--fleet", "--device", "local"), "give one of --compare, --fleet, --device "
                                                                  "(got fleet, device)")
    one_line_error(cli("report", "--device", "local", "runs/a"), "--device takes no run folder")
    one_line_error(cli("report", "--device", "../luts"), "invalid device name '../luts'")
    one_line_error(cli("report", "--inventory", "x.toml", "runs/a"), "--inventory goes with --fleet only")
    for runs in ((), ("runs/a", "runs/b")):
        one_line_error(cli("report", *runs), "give one run folder (or --compare RUN RUN ..., --device NAME, --fleet) "
                                             "(e.g. edgenas report demo-run)")


def test_serve_says_where_it_serves_once_it_listens(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    root = tmp_path / "p[bold]x"  # markup in the project's path is text
    root.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, EDGENAS_PROJECT=str(root), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    env.pop("EDGENAS_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-c", "from edgenas.cli import main; main()", "serve", "--port",
                             str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # said once the port is bound (uvicorn listens on it a moment later)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert line == f"edgenas serving {root} on http://127.0.0.1:{port}/ (API docs: /docs; Ctrl-C stops)\n"


def test_serve_binds_loopback_port_8765_unless_told(fresh, cli):
    res = cli("serve", "--help")
    text = " ".join(res.out.split())
    assert res.code == 0 and "TCP port [default: 8765]" in text and "[default: 127.0.0.1]" in text


def test_a_refused_out_is_refused_before_the_runs_are_read(fresh, cli, monkeypatch):
    """``report --out`` of another file was refused after the runs were read and the page built (seconds for
    100,000 evaluations): it is checked first."""
    from edgenas.report import source

    (fresh / "mine.html").write_text("<p>my notes</p>")
    read = []
    monkeypatch.setattr(source, "load_run_dir", lambda *a, **k: read.append(a) or pytest.fail("read a run"))
    for args in (("runs/a",), ("--compare", "runs/a", "runs/b")):
        one_line_error(cli("report", *args, "--out", "mine.html"), "mine.html exists and is not an edgenas report")
    one_line_error(cli("report", "--fleet", "--out", "."), ". is a folder")
    assert read == [] and (fresh / "mine.html").read_text() == "<p>my notes</p>"
