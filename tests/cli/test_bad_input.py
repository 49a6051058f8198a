"""Bad input: one clear red line, a non-zero exit, no traceback, and no file changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

def one_line_error(res, *fragments: str) -> None:
    assert res.code != 0, res.err
    assert "Traceback" not in res.err and "Traceback" not in res.out
    lines = res.err.rstrip("\n").splitlines()  # exactly one line: no blank line (an empty progress bar) before it
    assert len(lines) == 1, res.err
    assert lines[0].startswith("error:"), lines[0]
    for f in fragments:
        assert f.lower() in lines[0].lower(), (f, lines[0])


def good_arch(tmp_path):
    from edgenas.spaces import get_space
    import numpy as np

    space = get_space("mbv3-tiny")
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(space.to_dict(space.sample(np.random.default_rng(0)))))
    return path


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "malformed"),
    ('{"space": "mbv9", "ks": [3]}', "unknown search space"),
    ('{"ks": [3, 3]}', "space"),
    ('[1, 2, 3]', "expected a JSON object"),
    ('{"space": "mbv3-tiny", "schema": 1, "ks": [3, 3, 3, 3], "e": [3, 3, 3, 3], "d": [1, 1], "r": 16, "d": [2, 2]}',
     "the key 'd' is given twice in one object"),  # exported with d = [2, 2]
])
def test_malformed_or_unknown_arch(proj, cli, snapshot, tmp_path, content, fragment):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    before = snapshot(proj)
    for cmd in (["export", str(bad)], ["deploy", "local", str(bad)]):
        one_line_error(cli(*cmd), fragment)
    assert snapshot(proj) == before
    assert not (proj / "exports").exists()


def test_invalid_arch_values(proj, cli, snapshot, tmp_path):
    arch = json.loads(good_arch(tmp_path).read_text())
    arch["ks"][0] = 4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(arch))
    before = snapshot(proj)
    one_line_error(cli("export", str(bad)), "ks[0]")
    assert snapshot(proj) == before


def test_unknown_device_and_space(proj, cli, snapshot, tmp_path):
    before = snapshot(proj)
    one_line_error(cli("deploy", "no-such-board", str(good_arch(tmp_path))), "unknown device", "no-such-board")
    one_line_error(cli("profile", "local", "--space", "resnet9000"), "unknown search space")
    one_line_error(cli("profile", "local\n"), "invalid device name")  # a trailing newline is not a name
    one_line_error(cli("search", "--space", "mbv3-tiny", "--device", "nope", "--max-latency-ms", "1",
                       "--out", str(tmp_path / "r")), "no LUT", "nope")
    one_line_error(cli("search", "--space", "mbv3-tiny", "--strategy", "magic", "--out", str(tmp_path / "r")),
                   "unknown strategy")
    one_line_error(cli("search", "--space", "nosuch", "--device", "local", "--out", str(tmp_path / "r")),
                   "unknown search space", "mbv3-tiny")  # raised inside the progress bar's block
    assert snapshot(proj) == before
    assert not (tmp_path / "r").exists()


def test_missing_lut(proj, cli, tmp_path):
    import shutil

    shutil.rmtree(proj / "luts")
    one_line_error(cli("search", "--space", "mbv3-tiny", "--device", "local", "--max-latency-ms", "1",
                       "--out", str(tmp_path / "r")), "no LUT", "edgenas profile local")
    assert not (tmp_path / "r").exists()


def test_corrupt_lut_is_reported_and_left_alone(proj, cli, snapshot, tmp_path):
    lut = next((proj / "luts" / "local").glob("mbv3-tiny-*.json"))
    lut.write_text(lut.read_text()[: len(lut.read_text()) // 2])
    before = snapshot(proj)
    one_line_error(cli("search", "--space", "mbv3-tiny", "--device", "local", "--max-latency-ms", "1",
                       "--out", str(tmp_path / "r")), "malformed LUT")
    one_line_error(cli("profile", "local", "--space", "mbv3-tiny"), "malformed LUT")
    one_line_error(cli("lut", "show", str(lut)), "malformed LUT")
    assert snapshot(proj) == before


def test_lut_with_bad_entry(proj, cli, tmp_path):
    lut = next((proj / "luts" / "local").glob("mbv3-tiny-*.json"))
    data = json.loads(lut.read_text())
    key = next(iter(data["entries"]))
    data["entries"][key]["median_ms"] = -1
    lut.write_text(json.dumps(data))
    one_line_error(cli("lut", "show", str(lut)), "median_ms")


def test_infeasible_budget_reports_minimum(proj, cli, tmp_path):
    res = cli("search", "--space", "mbv3-tiny", "--device", "local", "--max-latency-ms", "0.00001",
              "--out", str(tmp_path / "r"))
    one_line_error(res, "fastest the space allows")
    assert res.code == 4
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("budget", ["inf", "nan", "-1", "0"])
def test_a_budget_that_is_not_a_positive_finite_number_is_refused_before_the_run(proj, cli, tmp_path, budget):
    # inf was accepted: the run finished, and its config.json was then refused by runs import and the report
    res = cli("search", "--space", "mbv3-tiny", "--device", "local", "--max-latency-ms", budget,
              "--evaluator", "params", "--budget", "4", "--out", str(tmp_path / "r"))
    one_line_error(res, "latency budget must be a positive number of ms")
    assert not (tmp_path / "r").exists()


def test_malformed_profile(proj, cli, tmp_path):
    (proj / "profiles").mkdir(exist_ok=True)
    (proj / "profiles" / "board.toml").write_text('[device]\nname = "board"\nhost = "h"\npassword = "x"\n')
    one_line_error(cli("device", "info", "board"), "password")
    (proj / "profiles" / "board.toml").write_text('[device\nname = "board"\n')
    one_line_error(cli("device", "info", "board"), "malformed")
    # saved by a Windows editor: tomllib's "Invalid statement (at line 1, column 1)" said nothing of the mark
    (proj / "profiles" / "board.toml").write_bytes(b'\xef\xbb\xbf[device]\nname = "board"\nhost = "h"\n')
    one_line_error(cli("device", "info", "board"), "board.toml starts with a byte-order mark", "without a BOM")


def test_missing_runtime_names_what_the_device_has(proj, cli, snapshot, tmp_path):
    """TensorRT is not on this machine: building an engine is one clear error saying what to do instead."""
    arch = good_arch(tmp_path)
    res = cli("export", str(arch), "--format", "trt", "--device", "local", "--out", str(tmp_path / "e"))
    one_line_error(res, "TensorRT (with its CUDA binding) is not installed", "--format onnx", "onnxruntime")


def test_tensorrt_profile_falls_back_with_a_note(proj, cli, tmp_path):
    (proj / "profiles").mkdir(exist_ok=True)
    (proj / "profiles" / "local.toml").write_text(
        '[device]\nname = "local"\ntransport = "local"\nruntime = "tensorrt"\nprecision = "fp16"\n')
    res = cli("deploy", "local", str(good_arch(tmp_path)), "--json")
    assert res.code == 0, res.err
    data = res.json()
    assert data["runtime"] == "onnxruntime"
    assert "TensorRT is missing" in data["note"]


def test_a_runtime_the_device_lacks_is_one_error_naming_what_it_has():
    from types import SimpleNamespace

    from edgenas.errors import RuntimeMissingError
    from edgenas.fleet.deploy import choose_runtime

    def info(*have):
        return SimpleNamespace(available_runtimes=lambda: list(have))

    assert choose_runtime("d", "torch", info("onnxruntime", "torch")) == ("torch", "")
    assert choose_runtime("d", "tensorrt", info("torch")) == (
        "torch", "TensorRT is missing on device 'd'; using torch instead")
    with pytest.raises(RuntimeMissingError, match="runtime 'torch' is not available; the device has: onnxruntime"):
        choose_runtime("d", "torch", info("onnxruntime"))  # only TensorRT falls back
    with pytest.raises(RuntimeMissingError, match="runtime 'tensorrt' is not available; the device has: none"):
        choose_runtime("d", "tensorrt", info())


@pytest.mark.parametrize("command", ["measure", "deploy"])
def test_an_unknown_runtime_is_refused_before_anything_reaches_the_device(proj, cli, snapshot, tmp_path, command):
    # measure pushed the model into the device's work dir before the agent refused the runtime
    import onnx

    m = onnx.load(next((proj / ".edgenas" / "blocks").glob("overhead-*.onnx")))
    m.doc_string = "a model the device has not seen"
    model = tmp_path / "m.onnx"
    onnx.save(m, model)
    device_dir = proj / ".edgenas" / "devices"  # the local device's work dir (the snapshot leaves out .edgenas)
    on_device = sorted(device_dir.rglob("*"))
    before = snapshot(proj)
    target = str(model) if command == "measure" else str(good_arch(tmp_path))
    one_line_error(cli(command, "local", target, "--runtime", "bogus", "--out" if command == "deploy" else "--json",
                       *([str(tmp_path / "exp")] if command == "deploy" else [])), "unknown runtime 'bogus'")
    assert snapshot(proj) == before and not (tmp_path / "exp").exists()
    assert sorted(device_dir.rglob("*")) == on_device


def test_measure_with_a_runtime_the_device_lacks_pushes_nothing(proj, cli, tmp_path):
    """``measure --runtime tensorrt`` on a device without TensorRT pushed the model into the device's work dir
    before the agent refused the engine build; the device's runtimes are now asked first."""
    import importlib.util

    import onnx

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the local device has the runtime")
    m = onnx.load(next((proj / ".edgenas" / "blocks").glob("overhead-*.onnx")))
    m.doc_string = "a model the device has not seen"
    onnx.save(m, model := tmp_path / "m.onnx")
    models = proj / ".edgenas" / "devices" / "local" / "models"
    before = sorted(models.rglob("*")) if models.exists() else []
    one_line_error(cli("measure", "local", str(model), "--runtime", "tensorrt"), "runtime 'tensorrt' is not available",
                   "the device has: onnxruntime")
    assert (sorted(models.rglob("*")) if models.exists() else []) == before


def test_simplify_without_a_simplifier_is_refused_before_the_export(proj, cli, tmp_path):
    """``export --simplify`` without onnxslim exported unsimplified, printing a raw Python warning (a source
    path and a line of code) on stderr; it is one red line now, and nothing is exported."""
    from exporters.onnx_export import simplifier_available

    if simplifier_available():
        pytest.skip("a graph simplifier is installed here")
    one_line_error(cli("export", str(good_arch(tmp_path)), "--simplify", "--out", str(tmp_path / "exp")),
                   "--simplify needs onnxslim", "pip install onnxslim")
    assert not (tmp_path / "exp").exists()


def test_malformed_onnx(proj, cli, tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    one_line_error(cli("measure", "local", str(bad)), "model.onnx")
    # a folder (or a device file) is no model by any name: the hint said to rename it to .onnx
    one_line_error(cli("measure", "local", str(tmp_path)), "is a folder, not a model file")
    one_line_error(cli("measure", "local", "/dev/zero"), "is not a regular file, not a model file")


def test_bad_flags_are_one_line(proj, cli):
    one_line_error(cli("search", "--bogus"), "no such option")
    one_line_error(cli("export", "a.json", "--format", "tflite"), "unknown format")


def test_list_names_every_registry(proj, cli):
    res = cli("list", "--json")
    assert res.code == 0
    reg = res.json()
    assert {"mbv3-small", "ofa-mbv3", "nb201"} <= set(reg["spaces"])
    assert {"random", "evolution", "nsga2", "woa", "ri-iwoa"} <= set(reg["strategies"])
    assert {"naswot", "synflow", "compression", "supernet", "tabular"} <= set(reg["evaluators"])
    assert set(reg["runtimes"]) == {"onnxruntime", "tensorrt", "torch"}


def test_error_inside_a_progress_block_is_the_only_line_in_a_real_process(tmp_path):
    # a real process (pytest's capture hides it): a progress bar entered but never shown printed an empty
    # line before the error
    env = {k: v for k, v in os.environ.items() if k != "EDGENAS_NO_PROGRESS"}
    res = subprocess.run([sys.executable, "-c", "from edgenas.cli import main; main()", "search", "--space",
                          "nosuch", "--device", "local", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120, env={**env, "EDGENAS_PROJECT": str(tmp_path)})
    assert res.returncode == 2 and res.stdout == "", (res.returncode, res.stdout)
    assert res.stderr.startswith("error: unknown search space 'nosuch'"), repr(res.stderr)
    assert len(res.stderr.rstrip("\n").splitlines()) == 1, repr(res.stderr)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, fragment", [
    (("profile", "nosuch"), "unknown device"),                       # no profile lock file
    (("device", "add", "nosuch", "--fewshot", "5"), "unknown device"),  # no reference block exported
    (("lut", "calibrate", "local"), "no LUT"),                        # no agent started, nothing installed
    (("runs", "show", "nosuch"), "not a run id"),                     # no experiment database created
    (("runs", "show", "\x1b[31m"), "error: '\\x1b[31m' is not a run id"),  # it said "'' is not a run id"
    (("runs", "import", "\x1b[31m.\n"), "error: \\x1b[31m.\\n is not a search run folder"),
    (("runs", "compare", "a1", "b2"), "no run"),
    (("runs", "import", "."), "not a search run folder"),
    (("search", "--rerun", "abc123"), "no run"),
    (("search", "--space", "nb201", "--budget", "0"), "--budget must be an integer >= 1"),
    (("runs", "compare", "a1"), "two or more run ids"),
    (("report", "runs/r1", "--probe", "--out", "r.html"), "--probe goes with --fleet only"),  # it was ignored
    (("report", "--device", "local", "--inventory", "f.toml", "--probe"), "--probe and --inventory go with --fleet"),
])
def test_bad_input_on_a_fresh_project_creates_nothing(fresh, cli, args, fragment):
    # the state folder (.edgenas: locks, the experiment database, the agent's work dir) included
    one_line_error(cli(*args), fragment)
    assert sorted(p.relative_to(fresh) for p in fresh.rglob("*")) == []


@pytest.mark.parametrize("args", [
    ("measure", "local", "{long}.onnx"), ("runs", "import", "{long}"), ("report", "{long}"),
    ("supernet", "eval", "{arch}", "--checkpoint", "{long}"), ("fleet", "status", "--inventory", "{long}"),
    ("search", "--resume", "{long}"), ("lut", "import-ofa", "{long}"),
])
def test_an_input_path_with_a_name_too_long_is_bad_input_not_an_output_error(fresh, cli, tmp_path, args):
    """ENAMETOOLONG of a path given to be read: "cannot read", exit 2 (it was "cannot write ...", exit 6)."""
    long, arch = tmp_path / ("x" * 256), good_arch(tmp_path)
    res = cli(*(a.format(long=long, arch=arch) for a in args))
    one_line_error(res, "error: cannot read ", str(long), "File name too long")
    assert res.code == 2 and "cannot write" not in res.err
    assert sorted(p.relative_to(fresh) for p in fresh.rglob("*")) == []


def _deny_lookups_under(monkeypatch, folder):
    """Every lookup and open of a path under ``folder`` fails with EACCES, as for a user who may not search the
    folder (no x): chmod does not stop root, whom the tests may run as."""
    import errno

    def denied(fn):
        def call(path, *a, **kw):
            if not isinstance(path, int) and os.path.abspath(os.fsdecode(path)).startswith(f"{folder}{os.sep}"):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
            return fn(path, *a, **kw)
        return call

    for name in ("stat", "lstat", "open", "scandir", "listdir", "access"):
        monkeypatch.setattr(os, name, denied(getattr(os, name)))


@pytest.mark.parametrize("args", [
    ("measure", "local", "{secret}/m.onnx"), ("report", "{secret}/run"), ("fleet", "status", "--inventory",
                                                                            "{secret}/fleet.toml"),
    ("export", "{secret}/arch.json"), ("search", "--resume", "{secret}/run"),
])
def test_an_input_in_a_folder_this_user_may_not_search_is_unreadable_input_not_unwritable(fresh, cli, tmp_path,
                                                                                         monkeypatch, args):
    """A lookup (``exists``, ``is_dir``, ``is_symlink``) of an input in a folder the user may not search escaped as
    a PermissionError and was told "cannot write ...: Permission denied", exit 6: the input cannot be read."""
    secret = tmp_path / "secret"
    secret.mkdir()
    _deny_lookups_under(monkeypatch, secret)
    res = cli(*(a.format(secret=secret) for a in args))
    one_line_error(res, "error: cannot read ", str(secret), "permission denied")
    assert res.code == 2 and "cannot write" not in res.err
    assert sorted(p.relative_to(fresh) for p in fresh.rglob("*")) == []


def test_an_escaped_permission_error_names_an_unreadable_input_only_where_its_path_cannot_be_looked_up(
        tmp_path, monkeypatch):
    """``escaped_error`` of EACCES: an input's (cannot read, exit 2, what to do) where the path cannot even be looked
    up; a write refused of a path that can be stays the disk's ("cannot write", exit 6)."""
    import errno

    from edgenas.errors import InputError, OutputError
    from edgenas.outdirs import escaped_error

    secret = tmp_path / "secret"
    secret.mkdir()
    _deny_lookups_under(monkeypatch, secret)
    e = escaped_error(PermissionError(errno.EACCES, "Permission denied", str(secret / "in.json")))
    assert isinstance(e, InputError) and e.exit_code == 2
    assert e.message == f"cannot read {secret}/in.json: permission denied (a folder on its path may not be searched " \
                        "by this user)"
    assert "read and search permission (r and x) on each folder" in e.hint
    w = escaped_error(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "out.json")))
    assert isinstance(w, OutputError) and w.exit_code == 6 and w.message.startswith("cannot write")


def test_an_out_path_with_a_name_too_long_stays_an_output_error_and_leaves_nothing(fresh, cli, tmp_path):
    arch = good_arch(tmp_path)
    for out in (fresh / ("x" * 256), fresh / "new" / ("x" * 256)):  # `new` was made and left behind
        res = cli("export", str(arch), "--out", str(out))
        one_line_error(res, f"cannot write --out folder {out}: File name too long")
        assert res.code == 6
    assert sorted(p.relative_to(fresh) for p in fresh.rglob("*")) == []


def test_resuming_a_file_is_bad_input(fresh, cli, tmp_path):
    best = tmp_path / "best.json"
    best.write_text("{}")
    res = cli("search", "--resume", str(best))  # it was check_out_dir's "is an existing file", exit 6
    one_line_error(res, f"--resume {best} is a file, not a run folder")
    res2 = cli("search", "--resume", str(best / "run"))  # "lies under a file", exit 6
    one_line_error(res2, f"{best / 'run'} holds no search to resume")
    assert (res.code, res2.code) == (2, 2) and best.read_text() == "{}"
    assert sorted(p.relative_to(fresh) for p in fresh.rglob("*")) == []


def test_reading_runs_of_a_fresh_project_lists_none_and_creates_nothing(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.delenv("EDGENAS_DB", raising=False)
    res = cli("runs", "list", "--json")
    assert res.code == 0 and res.json() == [], res.err
    res = cli("runs", "stale", "--json")
    assert res.code == 0 and res.json() == {"checked": 0, "stale": []}, res.err
    assert list(tmp_path.iterdir()) == []


def test_trusting_local_is_one_line_and_pulling_from_an_empty_local_says_so(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    for args in (("device", "trust", "local"), ("device", "trust", "local", "--yes")):
        one_line_error(cli(*args), "runs on this machine", "no SSH host key")  # not "cannot resolve host ''"
    assert not (tmp_path / "known_hosts").exists() and not (tmp_path / "profiles").exists()
    res = cli("lut", "pull", "local")
    assert res.code == 0 and "local holds no LUT to pull" in res.out, (res.out, res.err)
    assert cli("lut", "pull", "local", "--json").json() == []
    assert not (tmp_path / "luts").exists()


def test_an_error_echoing_a_huge_or_multi_line_value_is_still_one_short_line(proj, cli, snapshot, tmp_path):
    bad = tmp_path / "huge.json"
    arch = "|nor_conv_3x3~0|\n" * 5000  # 85,000 characters over 5,000 lines, echoed by the error
    bad.write_text(json.dumps({"space": "nb201", "schema": 1, "arch": arch}))
    before = snapshot(proj)
    res = cli("export", str(bad))
    one_line_error(res, "malformed NAS-Bench-201 architecture string", "more characters)",
                   "expected |op~0|")  # the hint survives the cut
    assert len(res.err) < 1300, len(res.err)
    assert snapshot(proj) == before


def test_one_line_cuts_and_joins():
    from edgenas.textsafe import one_line

    # newlines and tabs are spaces; other controls are shown escaped, as repr shows them: dropped, the line
    # named another value ('\x1b[31mr1' read as run r1)
    assert one_line("a\n  b\tc\x1b[31m d") == "a b c\\x1b[31m d"
    assert one_line("\r\x9b2J\u202e\udc9b\x00\x7f\x1c") == "\\r\\x9b2J\\u202e\\udc9b\\x00\\x7f\\x1c"
    assert one_line("tab\there\r\nthere") == "tab here there" and one_line("[/x] é €") == "[/x] é €"
    assert one_line("x" * 12, 10) == "x" * 10 + "… (2 more characters)"
    assert one_line("short", 10) == "short"


def test_text_is_cut_only_over_its_limit_and_keeps_all_but_controls():
    from edgenas.textsafe import brief, clean, esc, one_line

    assert clean("x" * 10, 10) == "x" * 10 and clean("x" * 11, 10) == "x" * 9 + "…"
    assert clean("abc", 1) == "…" and clean("abc", 0) == "…"
    assert one_line("x" * 10, 10) == "x" * 10
    assert one_line("x" * 1000) == "x" * 1000  # an error line shows at most 1000 characters of a value
    assert one_line("x" * 1001) == "x" * 1000 + "… (1 more characters)"
    assert brief("y" * 58) == repr("y" * 58) and brief("y" * 59) == "'" + "y" * 58 + "…"
    # CSI, OSC titles, 8-bit CSI and bidi overrides go; slashes, spaces, tabs and newlines stay
    assert clean("\x1b[31mred\x1b[0m \x1b]0;pwned\x07a/b\x9b2J\u202ec\td\n") == "red a/bc\td\n"
    assert esc("[bold]a\nb\tc\x1b[2J") == "\\[bold]a b c"
    # a lone surrogate (an undecodable byte of a file name: b"\x9b" is an 8-bit CSI) is no character: shown
    # escaped, never dropped (it would name another file) nor written as its raw byte
    assert clean("x\udc9b31mRED\udcff") == esc("x\udc9b31mRED\udcff") == "x\\udc9b31mRED\\udcff"
    assert brief("\udc9b") == "'\\udc9b'" and clean("\ud800\udfff") == "\\ud800\\udfff"


def test_the_safe_console_ignores_a_zero_size_and_prints_emoji_codes_as_text(monkeypatch):
    import io

    from edgenas.textsafe import SafeConsole

    monkeypatch.setenv("COLUMNS", "0")
    monkeypatch.setenv("LINES", "0")
    monkeypatch.delenv("TERM", raising=False)
    out = io.StringIO()
    console = SafeConsole(file=out)
    assert (console.width, console.height) == (80, 25)
    assert SafeConsole(file=io.StringIO(), width=50, height=10).size == (50, 10)
    console.print(":x: \x1b[2J/etc/passwd")
    assert out.getvalue() == ":x: /etc/passwd\n"


def test_an_unknown_run_to_warm_start_from_creates_no_database(fresh, cli, tmp_path):
    table = tmp_path / "hw.csv"
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    table.write_text(f"index,arch,acc\n0,{arch},93.5\n")
    root = fresh
    res = cli("search", "--space", "nb201", "--table", str(table), "--objective", "acc", "--budget", "1",
              "--warm-start", "abc123", "--out", str(root / "r"))
    one_line_error(res, "no run 'abc123'")
    assert list(root.iterdir()) == []
    one_line_error(cli("search", "--space", "nb201", "--table", str(table), "--objective", "acc", "--budget", "1",
                       "--strategy", "sh", "--ladder", ":", "--out", str(root / "r")), "evaluator name is missing")
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("args", [
    ("runs", "show", "{ref}"), ("runs", "compare", "{ref}", "b1"), ("search", "--rerun", "{ref}"),
    ("search", "--space", "nb201", "--table", "{table}", "--objective", "acc", "--budget", "1", "--warm-start", "{ref}",
     "--out", "r"),
])
def test_a_run_reference_longer_than_any_id_is_no_run(fresh, cli, snapshot, tmp_path, args):
    """A run id has at most 64 digits: a reference of 50,000 is "no run", exit 2 (it was "cannot reach database
    ... LIKE or GLOB pattern too complex", exit 6; --warm-start's "File name too long")."""
    table = tmp_path / "hw.csv"
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    table.write_text(f"index,arch,acc\n0,{arch},93.5\n")
    run = cli("search", "--space", "nb201", "--table", str(table), "--objective", "acc", "--budget", "1", "--out", "r0")
    assert run.code == 0, run.err  # a run to match: SQLite refused the pattern only when it had a row to test
    before = snapshot(fresh), _dump(fresh / ".edgenas" / "edgenas.db")  # (a WAL checkpoint changes the bytes)
    res = cli(*(a.format(ref="a" * 50_000, table=table) for a in args))
    one_line_error(res, "error: no run 'aaaaaaaaaaaaaaaa…' (50,000 digits; a run id has at most 64)")
    assert res.code == 2 and len(res.err) < 400
    assert (snapshot(fresh), _dump(fresh / ".edgenas" / "edgenas.db")) == before


def _dump(db) -> list[str]:
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def test_export_refuses_before_it_writes(proj, cli, snapshot, tmp_path):
    arch = good_arch(tmp_path)
    before = snapshot(proj)
    one_line_error(cli("export", str(arch), "--opset", "999"), "opset 999 is newer than this torch's exporter")
    one_line_error(cli("export", str(arch), "--opset", "5"), "opset 5 is too old")
    assert snapshot(proj) == before and not (proj / "exports").exists()
    from exporters.tensorrt import tensorrt_available

    res = cli("export", str(arch), "--format", "trt", "--device", "local")
    if tensorrt_available()[0]:  # where TensorRT exists the engine is built
        assert res.code == 0 and "TensorRT engine:" in res.out, res.err
        return
    # without it the ONNX export used to be written before the engine build failed
    one_line_error(res, "cannot build a TensorRT engine")
    assert snapshot(proj) == before and not (proj / "exports").exists()


def test_export_trt_refuses_bad_flags_before_it_asks_the_device(proj, cli, snapshot, tmp_path):
    """No --device: engines are built on one. A bad opset is the opset's error, not the device's (where TensorRT
    exists, a session is not started for an export that cannot be made)."""
    arch = good_arch(tmp_path)
    before = snapshot(proj)
    one_line_error(cli("export", str(arch), "--format", "trt"), "--format trt needs --device")
    one_line_error(cli("export", str(arch), "--format", "trt", "--device", "local", "--opset", "5"),
                   "opset 5 is too old")
    assert snapshot(proj) == before and not (proj / "exports").exists()


@pytest.mark.parametrize("flags, fragment", [
    (["--lr", "nan"], "lr in (0, 10]"), (["--lr", "inf"], "lr in (0, 10]"),
    (["--epochs", "inf"], "epochs in (0, 1e6]"), (["--epochs", "nan"], "epochs in (0, 1e6]"),
    # each ran (for ever, or into a float32 overflow as an internal error) before
    (["--lr", "1e308"], "lr in (0, 10]"), (["--n-random", "100000000000"], "n_random in [0, 64]"),
    (["--steps", "99999999999999999999"], "steps must be in [1, 1,000,000,000]"),
])
def test_supernet_training_refuses_non_finite_settings(proj, cli, tmp_path, flags, fragment):
    one_line_error(cli("supernet", "train", "--space", "mbv3-tiny", *flags, "--out", str(tmp_path / "sn")), fragment)
    assert not (tmp_path / "sn").exists()


def test_counts_seeds_and_unwritable_outputs_are_one_line(proj, cli, snapshot, tmp_path):
    before = snapshot(proj)
    one_line_error(cli("lut", "calibrate", "local", "--space", "mbv3-tiny", "--measure", "100000"),
                   "--measure must be at most 1000")  # ran for days before
    one_line_error(cli("device", "add", "local", "--fewshot", "5", "--seed", "-1"), "--seed must be an integer")
    assert snapshot(proj) == before
    # a path the file system refuses for a reason other than a full disk or permissions (ENOENT in /proc)
    one_line_error(cli("report", "--fleet", "--out", "/proc/edgenas-report.html"), "cannot write the report")


@pytest.mark.parametrize("out, fragment", [("/proc/edgenas-sn", "cannot write --out folder"),
                                           ("/dev/null/sn", "which is a file")])
def test_supernet_training_checks_its_out_folder_before_it_trains(proj, cli, out, fragment):
    # it found out at the first checkpoint (100 steps in), as an internal error
    one_line_error(cli("supernet", "train", "--space", "mbv3-tiny", "--steps", "1", "--out", out), fragment)
